"""The one training loop every architecture runs through.

The runner owns data, budgets, timing, logging, sample grids and result files; the
architecture owns its networks, optimizers and training step. Nothing here knows which
architecture it is running, so timings are comparable across architectures.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image

from bench import console
from bench.contract import DIAGNOSTICS, REQUIRED_LOSSES, ArchSpec, GAN, check_samples, check_step_output, count_parameters
from bench.data import BatchSampler, training_images
from bench.errors import UsageError
from bench.results import SCHEMA_VERSION, atomic_path, environment, make_run_dir, save_torch, utc_iso, write_csv, write_json
from bench.timing import StepTimer, summarize

#: Seed of the fixed latent batch behind every sample grid (separate from the training seed).
SAMPLE_SEED = 2024
GRID_SIDE = 5
#: TensorBoard tags of the conventional step outputs.
TAGS = {"d_loss": "loss/D", "g_loss": "loss/G", "d_real": "D(x)", "d_fake": "D(G(z))"}


@dataclass
class RunConfig:
    """Every setting of a run; ``None`` means "resolve from the architecture or default"."""

    arch: str
    epochs: int | None = None
    steps: int | None = None
    time_budget: float | None = None
    batch_size: int | None = None
    seed: int = 0
    device: str = "auto"
    out: str = "results/runs"
    sample_every: int = 400
    log_every: int = 50
    warmup_steps: int = 10
    train_subset: int | None = None
    data_dir: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)

    def budget(self) -> tuple[str, float]:
        """Return the one budget that applies, ``("epochs", 5)`` when none was given."""
        given = [(k, v) for k, v in (("epochs", self.epochs), ("steps", self.steps), ("time_budget", self.time_budget)) if v is not None]
        if len(given) > 1:
            names = " and ".join("--" + k.replace("_", "-") for k, _ in given)
            raise UsageError(f"{names} given together; choose exactly one budget")
        kind, value = given[0] if given else ("epochs", 5)
        if value <= 0:
            raise UsageError(f"--{kind.replace('_', '-')} must be positive, got {value}")
        return kind, value


def resolve_device(name: str) -> torch.device:
    """Turn ``auto|cpu|cuda[:N]`` into a device, refusing CUDA where there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name} asked for, but CUDA is not available here; use --device cpu")
        return torch.device(name)
    raise UsageError(f"unknown --device {name!r}; choose from: auto, cpu, cuda")


def peak_memory_bytes(device: torch.device) -> int:
    """The allocator's peak on CUDA, else this process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def sample_grid(gan: GAN, z: torch.Tensor) -> torch.Tensor:
    """A 5x5 grid of images generated from ``z``, in [0, 1]."""
    return make_grid(gan.generate(z).float().cpu(), nrow=GRID_SIDE, normalize=True, value_range=(-1, 1))


class Run:
    """One training run of one architecture under one budget."""

    def __init__(self, cfg: RunConfig, spec: ArchSpec):
        self.cfg = cfg
        self.spec = spec
        self.budget_kind, self.budget_value = cfg.budget()
        for flag, value in (("--sample-every", cfg.sample_every), ("--log-every", cfg.log_every)):
            if value < 0 or (flag == "--log-every" and value == 0):
                raise UsageError(f"{flag} must be positive, got {value}")
        self.device = resolve_device(cfg.device)
        overrides = dict(cfg.hparams)
        if cfg.batch_size is not None:
            overrides["batch_size"] = cfg.batch_size
        self.hparams = spec.make_config(overrides)

        data = training_images(spec.image_size, self.device, cfg.data_dir, cfg.train_subset)
        self.sampler = BatchSampler(data, self.hparams.batch_size, cfg.seed)
        if self.budget_kind == "epochs":
            self.total_steps: int | None = int(self.budget_value) * self.sampler.batches_per_epoch
        elif self.budget_kind == "steps":
            self.total_steps = int(self.budget_value)
        else:
            self.total_steps = None

        torch.manual_seed(cfg.seed)
        self.gan = spec.build(self.hparams, self.device)
        self.grid_z = self.gan.sample_latent(GRID_SIDE**2, torch.Generator().manual_seed(SAMPLE_SEED))
        self.params = {name: count_parameters(m) for name, m in self.gan.networks().items()}

        self.step = 0
        self.status = "running"
        self.diverged_at: int | None = None
        self.history: list[dict[str, float]] = []
        self.batch_sizes: list[int] = []
        self.timer = StepTimer(self.device)
        self._pending: list[dict[str, torch.Tensor]] = []
        self._pending_first = 0
        self.dir: Path | None = None
        self.tb: SummaryWriter | None = None

    # The loop ---------------------------------------------------------------------------

    def _budget_left(self, elapsed: float) -> bool:
        if self.total_steps is not None:
            return self.step < self.total_steps
        return elapsed < self.budget_value

    def train(self) -> dict[str, Any]:
        """Train to the budget, write every result file and return the run record."""
        cfg = self.cfg
        self.dir = make_run_dir(cfg.out, self.spec.name, cfg.seed)
        self.tb = SummaryWriter(str(self.dir / "tb"))
        self.started = utc_iso()
        gan, sampler, timer = self.gan, self.sampler, self.timer
        with console.TrainingProgress(self.spec.name, self.total_steps, self.budget_value if self.total_steps is None else None) as progress:
            t_start = time.perf_counter()
            elapsed = 0.0
            while self._budget_left(elapsed) and self.status == "running":
                timer.start()
                real = sampler.next()
                out = gan.train_step(real, self.step)
                timer.stop()
                if self.step == 0:
                    check_step_output(self.spec.name, out)  # one sync, inside warm-up
                self._pending.append(out)
                self.batch_sizes.append(real.shape[0])
                self.step += 1
                if self.step % cfg.log_every == 0:
                    self._flush(progress, time.perf_counter() - t_start)
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    self.tb.add_image("samples", sample_grid(gan, self.grid_z), self.step)
                elapsed = time.perf_counter() - t_start
                progress.update(self.step, elapsed)
            self._flush(progress, time.perf_counter() - t_start)
            self.wall_s = time.perf_counter() - t_start
            progress.line(self.step, self.wall_s, force=True)
        if self.status == "running":
            self.status = "completed"
        return self._finish()

    def _flush(self, progress: console.TrainingProgress, elapsed: float) -> None:
        """Pull the pending step outputs to the host (one sync) and log them."""
        if not self._pending:
            return
        keys = list(self._pending[0])
        values = torch.stack([torch.stack([o[k].float().reshape(()) for k in keys]) for o in self._pending]).cpu()
        first = self._pending_first
        times = self.timer.collect()
        for i, row in enumerate(values.tolist()):
            step = first + i
            if self.diverged_at is None and not all(map(_finite, row)):
                self.diverged_at = step
                self.status = "diverged"
            self.history.append({"step": step, **dict(zip(keys, row))})
        self._pending.clear()
        self._pending_first = self.step

        mean = {k: sum(h[k] for h in self.history[first:]) / (self.step - first) for k in keys}
        window = times[first:]
        ips = sum(self.batch_sizes[first:]) / (sum(window) / 1e3) if window and sum(window) > 0 else float("nan")
        for key, value in mean.items():
            self.tb.add_scalar(TAGS.get(key, f"diag/{key}"), value, self.step)
        self.tb.add_scalar("time/step_ms", sorted(window)[len(window) // 2], self.step)
        self.tb.add_scalar("time/images_per_s", ips, self.step)
        progress.update(self.step, elapsed, d=mean["d_loss"], g=mean["g_loss"], ips=ips)
        progress.line(self.step, elapsed)

    # Results ----------------------------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        gan, run_dir = self.gan, self.dir
        grid = sample_grid(gan, self.grid_z)
        check_samples(self.spec.name, gan.generate(self.grid_z[:2]), 2, self.spec.image_size)
        self.tb.add_image("samples", grid, self.step)
        with atomic_path(run_dir / "samples.png") as tmp:
            save_image(grid, tmp, format="png")
        save_torch(run_dir / "generator.pt", gan.generator.state_dict())

        keys = [k for k in (*REQUIRED_LOSSES, *DIAGNOSTICS)] + sorted(
            {k for h in self.history for k in h} - {"step", *REQUIRED_LOSSES, *DIAGNOSTICS}
        )
        keys = [k for k in keys if any(k in h for h in self.history)]
        header = ["step", *[TAGS.get(k, k) for k in keys]]
        rows = _interval_rows(self.history, keys, self.cfg.log_every)
        write_csv(run_dir / "losses.csv", header, rows)

        timing = summarize(self.timer.collect(), self.batch_sizes, self.cfg.warmup_steps, self.wall_s)
        if timing.measured_steps >= 20 and timing.spread > 1.5:
            console.warn(f"batch times vary widely (p90/p10 = {timing.spread:.2f}); the machine may be busy")
        last = self.history[-1] if self.history else {}
        tail = self.history[-self.cfg.log_every :]
        record = {
            "schema_version": SCHEMA_VERSION,
            "arch": self.spec.name,
            "status": self.status,
            "diverged_at_step": self.diverged_at,
            "started": self.started,
            "finished": utc_iso(),
            "config": self.resolved_config(),
            "params": self.params,
            "steps": self.step,
            "epochs": self.step / self.sampler.batches_per_epoch,
            "images_seen": int(sum(self.batch_sizes)),
            "timing": dataclasses.asdict(timing) | {"spread_p90_p10": timing.spread},
            "losses": {"d": last.get("d_loss"), "g": last.get("g_loss")},
            "discriminator": {k: _mean(tail, k) for k in DIAGNOSTICS},
            "peak_memory_bytes": peak_memory_bytes(self.device),
            "env": environment(self.device),
        }
        write_json(run_dir / "run.json", record)
        self.tb.flush()
        self.tb.close()
        return record

    def resolved_config(self) -> dict[str, Any]:
        """Every setting of the run with defaults resolved, as recorded in run.json."""
        cfg = dataclasses.asdict(self.cfg)
        cfg.pop("hparams")
        cfg.update(
            device=str(self.device),
            batch_size=self.hparams.batch_size,
            budget={"kind": self.budget_kind, "value": self.budget_value},
            image_size=self.spec.image_size,
            sample_seed=SAMPLE_SEED,
            hparams=dataclasses.asdict(self.hparams),
        )
        return cfg


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


def _mean(rows: list[dict[str, float]], key: str) -> float | None:
    vals = [r[key] for r in rows if key in r]
    return sum(vals) / len(vals) if vals else None


def _interval_rows(history: list[dict[str, float]], keys: list[str], every: int) -> list[list[Any]]:
    """One row per log interval: the step at its end and the mean of each value over it."""
    rows = []
    for start in range(0, len(history), every):
        chunk = history[start : start + every]
        rows.append([chunk[-1]["step"] + 1, *[_fmt_csv(_mean(chunk, k)) for k in keys]])
    return rows


def _fmt_csv(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def run(cfg: RunConfig, spec: ArchSpec) -> tuple[Run, dict[str, Any]]:
    """Build and train one run; return it and its record."""
    r = Run(cfg, spec)
    return r, r.train()
