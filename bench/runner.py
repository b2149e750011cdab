"""The one training loop every architecture runs through.

The runner owns data, budgets, timing, logging, evaluation, checkpoints and result files;
the architecture owns its networks, optimizers and training step. Nothing here knows which
architecture it is running, so timings are comparable across architectures.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import resource
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image

from bench import console
from bench.contract import DIAGNOSTICS, REQUIRED_LOSSES, ArchSpec, GAN, check_samples, check_step_output, count_parameters
from bench.data import BatchSampler, SamplerState, training_images
from bench.errors import PluginError, UsageError
from bench.record import RunRecord, read_record
from bench.results import (
    SCHEMA_VERSION, atomic_path, environment, make_run_dir, save_torch, tune_allocator, utc_iso, write_csv, write_json,
)
from bench.timing import StepTimer, summarize

#: Seed of the fixed latent batch behind every sample grid (separate from the training seed).
SAMPLE_SEED = 2024
GRID_SIDE = 5
#: TensorBoard tags of the conventional step outputs.
TAGS = {"d_loss": "loss/D", "g_loss": "loss/G", "d_real": "D(x)", "d_fake": "D(G(z))"}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
#: Training steps whose FLOPs are averaged for ``flops_per_step`` (covers a 5-step critic cycle).
FLOP_STEPS = 5
CHECKPOINT = "checkpoint.pt"
METRIC_COLUMNS = ("fid", "kid", "precision", "recall", "classifier_score", "modes_covered", "mode_kl")


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
    precision: str = "fp32"
    threads: int | None = None
    cuda_graphs: bool = False
    out: str = "results/runs"
    sample_every: int = 400
    log_every: int = 50
    warmup_steps: int = 10
    train_subset: int | None = None
    data_dir: str | None = None
    eval: bool = True
    eval_every: int | None = None
    eval_every_s: float | None = None
    eval_samples: int = 10_000
    checkpoint_every: int | None = None
    hparams: dict[str, Any] = field(default_factory=dict)

    def budget(self) -> tuple[str, float]:
        """Return the one budget that applies, ``("epochs", 5)`` when none was given."""
        given = [(k, v) for k, v in (("epochs", self.epochs), ("steps", self.steps), ("time_budget", self.time_budget)) if v is not None]
        if len(given) > 1:
            names = " and ".join("--" + k.replace("_", "-") for k, _ in given)
            raise UsageError(f"{names} given together; choose exactly one budget")
        kind, value = given[0] if given else ("epochs", 5)
        if not value > 0 or math.isinf(value):
            raise UsageError(f"--{kind.replace('_', '-')} must be a positive number, got {value}")
        return kind, value

    def validate(self) -> None:
        """Raise :class:`UsageError` for settings that cannot work, before anything is built."""
        self.budget()
        positive = {"--threads": self.threads, "--log-every": self.log_every, "--eval-every": self.eval_every,
                    "--checkpoint-every": self.checkpoint_every, "--eval-samples": self.eval_samples}
        for flag, value in positive.items():
            if value is not None and value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        for flag, value in {"--sample-every": self.sample_every, "--warmup-steps": self.warmup_steps}.items():
            if value < 0:
                raise UsageError(f"{flag} must be 0 or more, got {value}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown --precision {self.precision!r}; choose from: {', '.join(PRECISIONS)}")
        if (self.eval_every is not None or self.eval_every_s is not None) and not self.eval:
            raise UsageError("--eval-every and --no-eval given together")
        if self.eval_every_s is not None and not self.eval_every_s > 0:
            raise UsageError(f"--eval-every must be positive, got {self.eval_every_s}s")


def resolve_device(name: str) -> torch.device:
    """Turn ``auto|cpu|cuda[:N]`` into a device, refusing CUDA where there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name} asked for, but CUDA is not available here; use --device cpu")
        return torch.device(name)
    raise UsageError(f"unknown --device {name!r}; choose from: auto, cpu, cuda")


def weights_finite(networks: Iterable[torch.nn.Module]) -> bool:
    """True when no parameter holds a NaN or an infinity; one host sync.

    Through each parameter's min and max (NaN propagates into both): on vanilla's 2M
    parameters 1.2 ms against 10 ms for ``isfinite(p).all()`` per parameter, which at every
    log interval was ~1% of the training time.
    """
    bounds = [torch.stack(torch.aminmax(p.detach())) for m in networks for p in m.parameters() if p.numel()]
    return not bounds or bool(torch.cat(bounds).isfinite().all())


def peak_memory_bytes(device: torch.device) -> int:
    """The allocator's peak on CUDA, else this process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def sample_grid(gan: GAN, z: torch.Tensor) -> torch.Tensor:
    """A 5x5 grid of images generated from ``z``, in [0, 1]."""
    return make_grid(gan.generate(z).float().cpu(), nrow=GRID_SIDE, normalize=True, value_range=(-1, 1))


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global RNG states a training step may draw from."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def measure_flops(gan: GAN, real: torch.Tensor, steps: int = FLOP_STEPS) -> int | None:
    """FLOPs of one training step, averaged over ``steps`` steps of a throwaway copy.

    The copy and the restored RNG state leave the run itself untouched. Returns None (with
    a warning) when the FLOP counter cannot follow the step: its module hooks refuse
    ``autograd.grad`` on a leaf, which a gradient penalty does.
    """
    state = rng_state(real.device)
    try:
        clone = copy.deepcopy(gan)
        with FlopCounterMode(display=False) as counter:
            for step in range(steps):
                clone.train_step(real, step)
        return int(counter.get_total_flops() // steps)
    except RuntimeError as exc:
        console.warn(f"FLOPs per step not measured: torch's FLOP counter failed on this step ({str(exc).splitlines()[0]})")
        return None
    finally:
        set_rng_state(state, real.device)


class StepGraph:
    """Replay an architecture's training step as one CUDA graph (``--cuda-graphs``).

    The first :data:`WARMUP` steps run eagerly on a side stream (as graph capture requires),
    the next full-size batch is captured and then every full-size batch replays the graph:
    one launch per step instead of hundreds. A partial last batch of an epoch runs eagerly.
    Only architectures whose step does not branch on the step index or host state declare
    ``graph_safe = True``; their optimizers are switched to ``capturable`` mode.
    """

    WARMUP = 3

    def __init__(self, gan: GAN, name: str):
        if not getattr(gan, "graph_safe", False):
            raise UsageError(f"architecture {name!r} does not declare its step graph-safe (graph_safe = True); run it without --cuda-graphs")
        self.gan = gan
        for opt in gan.optimizers().values():
            for group in opt.param_groups:
                if "capturable" in group:
                    group["capturable"] = True
        self.graph: torch.cuda.CUDAGraph | None = None
        self.side = torch.cuda.Stream()
        self.static_real: torch.Tensor | None = None
        self.static_out: dict[str, torch.Tensor] = {}
        self.eager_steps = 0

    def step(self, real: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        if self.graph is not None and real.shape == self.static_real.shape:
            self.static_real.copy_(real)
            self.graph.replay()
            return {k: v.clone() for k, v in self.static_out.items()}
        if self.graph is None and self.eager_steps >= self.WARMUP and self.static_real is not None and real.shape == self.static_real.shape:
            torch.cuda.current_stream().wait_stream(self.side)
            self.static_real.copy_(real)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_out = self.gan.train_step(self.static_real, step)
            self.graph.replay()  # capture records without running: this replay is the step
            return {k: v.clone() for k, v in self.static_out.items()}
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            out = self.gan.train_step(real, step)
        torch.cuda.current_stream().wait_stream(self.side)
        if self.static_real is None or self.graph is None and real.shape != self.static_real.shape:
            self.static_real = torch.empty_like(real)
        self.eager_steps += 1
        return out


@contextlib.contextmanager
def graceful_stop() -> Iterator[dict[str, int | None]]:
    """Turn the first SIGINT/SIGTERM into a request to stop at the next batch boundary.

    A second signal interrupts at once (KeyboardInterrupt). Outside the main thread
    (where handlers cannot be installed) this only yields the flag.
    """
    flag: dict[str, int | None] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag["signal"] is not None:
            raise KeyboardInterrupt
        flag["signal"] = signum
        console.warn(f"{signal.Signals(signum).name} received: stopping after this batch and saving a checkpoint")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Run:
    """One training run of one architecture under one budget.

    Args:
        cfg: the settings.
        spec: the architecture.
        evaluator: scores the generator (a :class:`bench.metrics.Evaluator`); built on
            demand when ``cfg.eval`` is on and none is given (share one across runs).
    """

    def __init__(self, cfg: RunConfig, spec: ArchSpec, evaluator: Any = None):
        cfg.validate()
        self.cfg = cfg
        self.spec = spec
        self.budget_kind, self.budget_value = cfg.budget()
        self.device = resolve_device(cfg.device)
        if cfg.cuda_graphs and self.device.type != "cuda":
            raise UsageError(f"--cuda-graphs needs a CUDA device, but the run is on {self.device}")
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        tune_allocator()
        self.autocast_dtype = PRECISIONS[cfg.precision]
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

        # Before seeding: loading the classifier must not shift the training RNG.
        self.evaluator = evaluator
        if cfg.eval and evaluator is None:
            from bench.metrics import Evaluator

            self.evaluator = Evaluator(self.device, n_samples=cfg.eval_samples, data_dir=cfg.data_dir)

        torch.manual_seed(cfg.seed)
        self.gan = spec.build(self.hparams, self.device)
        self.gan.batches_per_epoch = self.sampler.batches_per_epoch
        self.graphs = StepGraph(self.gan, spec.name) if cfg.cuda_graphs else None
        self.grid_z = self.gan.sample_latent(GRID_SIDE**2, torch.Generator().manual_seed(SAMPLE_SEED))
        self.params = {name: count_parameters(m) for name, m in self.gan.networks().items()}
        self.step = 0
        self.status = "running"
        self.stop_signal: int | None = None
        self.diverged_at: int | None = None
        self.error: str | None = None
        self.history: list[dict[str, float]] = []
        self.evaluations: list[dict[str, Any]] = []
        self.metrics: dict[str, Any] | None = None
        self._last_metrics: dict[str, Any] | None = None
        self.batch_sizes: list[int] = []
        self.timer = StepTimer(self.device)
        self.train_wall_s = 0.0  # training wall-clock, evaluation and checkpoints excluded
        self.eval_s = 0.0
        self.flops_per_step: int | None = None
        self.started = utc_iso()
        self._pending: list[dict[str, torch.Tensor]] = []
        self.dir: Path | None = None  # made by train() unless the caller sets it first
        self.resumed = False
        self.tb: SummaryWriter | None = None

    # Resume -----------------------------------------------------------------------------

    @classmethod
    def resume(cls, run_dir: str | Path, spec_for: Any, evaluator: Any = None) -> "Run":
        """Rebuild the run in ``run_dir`` from its run.json and checkpoint, ready to continue.

        Args:
            spec_for: ``name -> ArchSpec`` (the registry's ``load``).
        """
        run_dir = Path(run_dir)
        record = read_record(run_dir)
        ckpt_path = run_dir / CHECKPOINT
        if not ckpt_path.is_file():
            raise UsageError(f"{run_dir} has no {CHECKPOINT} to resume from (status: {record.status})")
        cfg = RunConfig(**{f.name: getattr(record.config, f.name) for f in dataclasses.fields(RunConfig)})
        run = cls(cfg, spec_for(record.arch), evaluator)
        try:
            ckpt = torch.load(ckpt_path, map_location=run.device, weights_only=True)
        except Exception as exc:
            raise UsageError(f"{ckpt_path} cannot be read ({type(exc).__name__}: {exc}); the run cannot be resumed") from None
        run.gan.load_state_dict(ckpt["gan"])
        run.step = int(ckpt["step"])
        run.sampler.state = SamplerState(**ckpt["sampler"])
        run.history = ckpt["history"]
        run.batch_sizes = ckpt["batch_sizes"]
        run.timer.times_ms = ckpt["times_ms"]
        run.evaluations = ckpt["evaluations"]
        run.train_wall_s = float(ckpt["train_wall_s"])
        run.eval_s = float(ckpt["eval_s"])
        run.flops_per_step = ckpt["flops_per_step"]
        run._last_metrics = ckpt["last_metrics"]
        run.started = record.started
        run.dir = run_dir
        run.resumed = True
        set_rng_state(ckpt["rng"], run.device)
        return run

    def save_checkpoint(self) -> None:
        """Write everything needed to continue exactly from here (atomically)."""
        save_torch(self.dir / CHECKPOINT, {
            "step": self.step,
            "gan": self.gan.state_dict(),
            "sampler": dataclasses.asdict(self.sampler.state),
            "rng": rng_state(self.device),
            "history": self.history,
            "batch_sizes": self.batch_sizes,
            "times_ms": self.timer.collect(),
            "evaluations": self.evaluations,
            "train_wall_s": self.train_wall_s,
            "eval_s": self.eval_s,
            "flops_per_step": self.flops_per_step,
            "last_metrics": self._last_metrics,
        })

    # The loop ---------------------------------------------------------------------------

    def _budget_left(self) -> bool:
        if self.total_steps is not None:
            return self.step < self.total_steps
        return self.train_wall_s < self.budget_value

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        # No cast cache: it keeps each weight's low-precision copy for the whole step, so a
        # network used again after an in-place update (wgan's critic after its step and
        # clipping) would run on stale weights; CUDA graphs would also replay stale copies.
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=False)

    def train(self) -> dict[str, Any]:
        """Train to the budget, evaluate, write every result file and return the run record."""
        cfg = self.cfg
        resumed = self.resumed
        if self.dir is None:
            self.dir = make_run_dir(cfg.out, self.spec.name, cfg.seed)
        self.tb = SummaryWriter(str(self.dir / "tb"), purge_step=self.step if resumed else None)
        if self.flops_per_step is None:
            self.flops_per_step = measure_flops(self.gan, self.sampler.data[: self.hparams.batch_size])
        if not resumed:
            write_json(self.dir / "run.json", self.record())  # status "running": a crash leaves a trace
        try:
            self._loop()
            if self.status == "running":
                self.status = "completed"
            if self.status == "interrupted":
                self.save_checkpoint()
            elif self.status == "completed" and self.evaluator is not None and (
                not self.evaluations or self.evaluations[-1]["step"] != self.step
            ):
                self._evaluate()
        except BaseException as exc:
            # Keep what was earned: write the partial results, then let the error through.
            self.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            self._pending.clear()
            with contextlib.suppress(Exception):
                self._finish()
            raise
        return self._finish()

    def _loop(self) -> None:
        """Train until the budget is spent, a signal arrives or the run diverges."""
        cfg = self.cfg
        gan, sampler, timer = self.gan, self.sampler, self.timer
        time_budget = self.budget_value if self.total_steps is None else None
        if cfg.eval_every_s:
            self._next_eval_s = (self.train_wall_s // cfg.eval_every_s + 1) * cfg.eval_every_s
        with graceful_stop() as stop, console.TrainingProgress(self.spec.name, self.total_steps, time_budget) as progress:
            progress.update(self.step, self.train_wall_s)
            segment_start = time.perf_counter() - self.train_wall_s
            while self._budget_left() and self.status == "running":
                if stop["signal"] is not None:
                    self.status, self.stop_signal = "interrupted", stop["signal"]
                    break
                timer.start()
                real = sampler.next()
                try:
                    with self._autocast():
                        if self.graphs is not None:
                            out = self.graphs.step(real, self.step)
                        else:
                            out = gan.train_step(real, self.step)
                except Exception as exc:
                    raise PluginError(self.spec.name, f"train_step raised {type(exc).__name__} at step {self.step}: {exc}") from exc
                timer.stop()
                if not self.history and not self._pending:
                    check_step_output(self.spec.name, out)  # one sync, inside warm-up
                self._pending.append(out)
                self.batch_sizes.append(real.shape[0])
                self.step += 1
                if self.step % cfg.log_every == 0:
                    self._flush(progress)
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    self.tb.add_image("samples", sample_grid(gan, self.grid_z), self.step)
                self.train_wall_s = time.perf_counter() - segment_start
                due = (cfg.eval_every and self.step % cfg.eval_every == 0) or (
                    cfg.eval_every_s and self.train_wall_s >= self._next_eval_s
                )
                if due and self.status == "running":
                    if cfg.eval_every_s:
                        self._next_eval_s = (self.train_wall_s // cfg.eval_every_s + 1) * cfg.eval_every_s
                    paused = time.perf_counter()
                    self._evaluate()
                    segment_start += time.perf_counter() - paused
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.status == "running":
                    paused = time.perf_counter()
                    self._flush(progress)
                    self.save_checkpoint()
                    write_json(self.dir / "run.json", self.record())
                    segment_start += time.perf_counter() - paused
                progress.update(self.step, self.train_wall_s)
            self._flush(progress)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # the host runs ahead; wall time ends when the device does
            if self.status != "interrupted" or self.step:
                self.train_wall_s = time.perf_counter() - segment_start
            progress.line(self.step, self.train_wall_s, force=True)

    def _evaluate(self) -> None:
        """Score the generator now; the time it takes is kept out of the training timing."""
        m = self.evaluator.evaluate(self.gan)
        self.eval_s += m["eval_s"]
        self._last_metrics = m
        row = {"step": self.step, "train_wall_s": self.train_wall_s, **{k: m[k] for k in METRIC_COLUMNS}, "eval_s": m["eval_s"]}
        self.evaluations.append(row)
        for k in METRIC_COLUMNS:
            self.tb.add_scalar(f"metrics/{k}", m[k], self.step)
            self.tb.add_scalar(f"metrics_vs_time/{k}", m[k], int(self.train_wall_s * 1000))
        console.err.print(
            f"{self.spec.name}: step {self.step}  FID (MNIST classifier features) {m['fid']:.3f}  "
            f"modes {m['modes_covered']}/10  ({m['eval_s']:.1f}s)", soft_wrap=True,
        )

    def _flush(self, progress: console.TrainingProgress) -> None:
        """Pull the pending step outputs to the host (one sync), log them, check for divergence."""
        if not self._pending:
            return
        keys = list(self._pending[0])
        values = torch.stack([torch.stack([o[k].float().reshape(()) for k in keys]) for o in self._pending]).cpu()
        first = self.step - len(self._pending)
        for i, row in enumerate(values.tolist()):
            if self.diverged_at is None and not all(map(math.isfinite, row)):
                self.diverged_at, self.status = first + i, "diverged"
            self.history.append({"step": first + i, **dict(zip(keys, row))})
        self._pending.clear()
        if self.diverged_at is None and not weights_finite(self.gan.networks().values()):
            self.diverged_at, self.status = self.step - 1, "diverged"

        recent = self.history[first - self.step :]
        mean = {k: _mean(recent, k) for k in keys}
        window = self.timer.collect()[first:]
        ips = sum(self.batch_sizes[first:]) / (sum(window) / 1e3) if window and sum(window) > 0 else float("nan")
        for key, value in mean.items():
            self.tb.add_scalar(TAGS.get(key, f"diag/{key}"), value, self.step)
        self.tb.add_scalar("time/step_ms", sorted(window)[len(window) // 2], self.step)
        self.tb.add_scalar("time/images_per_s", ips, self.step)
        progress.update(self.step, self.train_wall_s, d=mean["d_loss"], g=mean["g_loss"], ips=ips)
        progress.line(self.step, self.train_wall_s)

    # Results ----------------------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        """The run record (run.json) as it stands."""
        timing = summarize(self.timer.collect(), self.batch_sizes, self.cfg.warmup_steps, self.train_wall_s)
        last = self.history[-1] if self.history else {}
        tail = self.history[-self.cfg.log_every :]
        return {
            "schema_version": SCHEMA_VERSION,
            "arch": self.spec.name,
            "status": self.status,
            "diverged_at_step": self.diverged_at,
            "error": self.error,
            "stop_signal": signal.Signals(self.stop_signal).name if self.stop_signal else None,
            "started": self.started,
            "updated": utc_iso(),
            "config": self.resolved_config(),
            "params": self.params,
            "flops_per_step": self.flops_per_step,
            "steps": self.step,
            "epochs": self.step / self.sampler.batches_per_epoch,
            "images_seen": int(sum(self.batch_sizes)),
            "timing": dataclasses.asdict(timing) | {"spread_p90_p10": timing.spread, "eval_s": self.eval_s},
            "losses": {"d": last.get("d_loss"), "g": last.get("g_loss")},
            "discriminator": {k: _mean(tail, k) for k in DIAGNOSTICS},
            "metrics": self.metrics,
            "evaluations": self.evaluations,
            "references": self.evaluator.reference_points() if self.evaluator is not None and self.metrics else None,
            "peak_memory_bytes": peak_memory_bytes(self.device),
            "env": environment(self.device),
        }

    def _finish(self) -> dict[str, Any]:
        gan, run_dir = self.gan, self.dir
        if self.evaluations and self.evaluations[-1]["step"] == self.step:
            self.metrics = self._last_metrics
        grid = sample_grid(gan, self.grid_z)
        if self.status in ("completed", "interrupted"):
            check_samples(self.spec.name, gan.generate(self.grid_z[:2]), 2, self.spec.image_size)
        self.tb.add_image("samples", grid, self.step)
        with atomic_path(run_dir / "samples.png") as tmp:
            save_image(grid, tmp, format="png")
        save_torch(run_dir / "generator.pt", gan.generator.state_dict())

        keys = [k for k in (*REQUIRED_LOSSES, *DIAGNOSTICS)] + sorted(
            {k for h in self.history for k in h} - {"step", *REQUIRED_LOSSES, *DIAGNOSTICS}
        )
        keys = [k for k in keys if any(k in h for h in self.history)]
        rows = _interval_rows(self.history, keys, self.cfg.log_every)
        write_csv(run_dir / "losses.csv", ["step", *[TAGS.get(k, k) for k in keys]], rows)
        if self.evaluations:
            cols = ["step", "train_wall_s", *METRIC_COLUMNS, "eval_s"]
            write_csv(run_dir / "metrics.csv", cols, [[_csv(e[c]) for c in cols] for e in self.evaluations])

        record = self.record()
        t = record["timing"]
        if t["measured_steps"] >= 20 and t["spread_p90_p10"] > 1.5:
            console.warn(f"batch times vary widely (p90/p10 = {t['spread_p90_p10']:.2f}); the machine may be busy")
        if self.metrics is not None:
            self.tb.add_hparams(
                _hparam_values(record["config"]),
                {f"hparam/{k}": self.metrics[k] for k in METRIC_COLUMNS},
                run_name=".",
            )
        write_json(run_dir / "run.json", record)
        if self.status == "completed":
            (run_dir / CHECKPOINT).unlink(missing_ok=True)
        self.tb.flush()
        self.tb.close()
        return record

    def resolved_config(self) -> dict[str, Any]:
        """Every setting of the run with defaults resolved, as recorded in run.json."""
        cfg = dataclasses.asdict(self.cfg)
        cfg.update(
            device=str(self.device),
            batch_size=self.hparams.batch_size,
            budget={"kind": self.budget_kind, "value": self.budget_value},
            image_size=self.spec.image_size,
            sample_seed=SAMPLE_SEED,
            hparams=dataclasses.asdict(self.hparams),
        )
        return cfg


def load_trained(run_dir: str | Path, spec_for: Any, device: torch.device) -> tuple[RunRecord, GAN]:
    """Rebuild a run's architecture from run.json and load its trained generator."""
    record = read_record(run_dir)
    path = Path(run_dir) / "generator.pt"
    if not path.is_file():
        raise UsageError(f"{run_dir} has no generator.pt (status: {record.status})")
    spec = spec_for(record.arch)
    gan = spec.build(spec.make_config(record.config.hparams), device)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        gan.generator.load_state_dict(state)
    except Exception as exc:
        raise UsageError(f"{path} cannot be loaded into {record.arch}'s generator: {type(exc).__name__}: {exc}") from None
    return record, gan


def _hparam_values(config: dict[str, Any]) -> dict[str, Any]:
    """Flatten a resolved config into the scalar values TensorBoard's HParams view takes."""
    flat = {k: v for k, v in config.items() if k not in ("hparams", "budget")}
    flat.update({f"hp.{k}": v for k, v in config["hparams"].items()})
    flat["budget"] = f"{config['budget']['kind']}={config['budget']['value']}"
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in flat.items()}


def _mean(rows: list[dict[str, float]], key: str) -> float | None:
    vals = [r[key] for r in rows if key in r]
    return sum(vals) / len(vals) if vals else None


def _interval_rows(history: list[dict[str, float]], keys: list[str], every: int) -> list[list[Any]]:
    """One row per log interval: the step at its end and the mean of each value over it."""
    rows = []
    for start in range(0, len(history), every):
        chunk = history[start : start + every]
        rows.append([chunk[-1]["step"] + 1, *[_csv(_mean(chunk, k)) for k in keys]])
    return rows


def _csv(x: Any) -> str:
    if x is None:
        return ""
    return f"{x:.6g}" if isinstance(x, float) else str(x)
