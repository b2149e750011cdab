"""Everything a run writes: TensorBoard events, losses.csv, metrics.csv, samples.png, generator.pt (and
sampling.pt), run.json.

The runner decides what happened; the recorder decides how it is kept. Every file is written
atomically (:mod:`bench.storage`) inside the stop request's critical section, so a second
Ctrl-C cannot cut a results file or checkpoint short.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image

from bench.contract import DIAGNOSTICS, GAN, REQUIRED_LOSSES
from bench.errors import PluginError
from bench.layout import CHECKPOINT, GENERATOR, LOSS_TAGS, LOSSES_CSV, METRICS_CSV, SAMPLES, SAMPLING, TENSORBOARD
from bench.record import Evaluation, RunRecord
from bench.scores import METRIC_NAMES
from bench.stop import StopRequest
from bench.storage import atomic_path, save_torch, write_csv

#: The final metrics' tags in the HParams view: apart from the ``metrics/<name>`` curves, since a
#: tag that is also a curve would show the curve's last point there.
FINAL_METRIC_TAG = "final/{}"
#: Seed of the fixed latent batch behind every sample grid (separate from the training seed).
SAMPLE_SEED = 2024
GRID_SIDE = 5


def sample_grid(gan: GAN, z: torch.Tensor) -> torch.Tensor:
    """A 5x5 grid of images generated from ``z``, in [0, 1] (a diverged generator's NaNs drawn black)."""
    grid = make_grid(gan.generate(z).float().cpu(), nrow=GRID_SIDE, normalize=True, value_range=(-1, 1))
    return torch.nan_to_num(grid, nan=0.0)


def mean_of(rows: list[dict[str, float]], key: str) -> float | None:
    """The mean of ``key`` over the rows that have it, or None."""
    values = [r[key] for r in rows if key in r]
    return sum(values) / len(values) if values else None


class Recorder:
    """The writer of one run folder."""

    def __init__(self, run_dir: Path, stop: StopRequest):
        self.dir = run_dir
        self.stop = stop
        self.tb: SummaryWriter | None = None

    def open(self, resumed_at: int | None) -> None:
        """Start the TensorBoard writer; on resume, drop events logged after the checkpoint."""
        self.tb = SummaryWriter(str(self.dir / TENSORBOARD), purge_step=resumed_at)

    def log_interval(self, means: dict[str, float | None], step: int, step_ms: float, images_per_s: float) -> None:
        """One log interval: the mean of each step output, the median batch time and images/s."""
        for key, value in means.items():
            self.tb.add_scalar(LOSS_TAGS.get(key, f"diag/{key}"), value, step)
        self.tb.add_scalar("time/step_ms", step_ms, step)
        self.tb.add_scalar("time/images_per_s", images_per_s, step)

    def log_samples(self, grid: torch.Tensor, step: int) -> None:
        self.tb.add_image("samples", grid, step)

    def log_evaluation(self, evaluation: Evaluation) -> None:
        """Every metric against batches, and against whole training seconds as the step (TensorBoard calls that
        axis "Step"; in seconds, runs of different speeds line up on a time axis)."""
        for name in METRIC_NAMES:
            value = evaluation.value(name)
            self.tb.add_scalar(f"metrics/{name}", value, evaluation.step)
            self.tb.add_scalar(f"metrics_vs_time/{name}", value, round(evaluation.train_wall_s))

    def write_record(self, record: RunRecord) -> None:
        with self.stop.critical():
            record.write(self.dir)

    def write_checkpoint(self, save: Any) -> None:
        """Run ``save(path)`` on the checkpoint's path, uninterrupted."""
        with self.stop.critical():
            save(self.dir / CHECKPOINT)

    def remove_checkpoint(self) -> None:
        (self.dir / CHECKPOINT).unlink(missing_ok=True)

    def write_results(self, record: RunRecord, history: list[dict[str, float]], log_every: int,
                      grid: torch.Tensor | None, gan: GAN) -> None:
        """The files of a run that has ended (or stopped): samples, generator, CSVs, hparams, run.json.

        run.json comes last, so a completed run.json means every other file is there.
        """
        with self.stop.critical():
            if grid is not None:  # None: the generator could not draw one (a failed run)
                self.tb.add_image("samples", grid, record.steps)
                with atomic_path(self.dir / SAMPLES) as tmp:
                    save_image(grid, tmp, format="png")
            save_torch(self.dir / GENERATOR, gan.generator.state_dict())
            self._write_sampling_state(gan, record.arch)
            self._write_losses(history, log_every)
            if record.evaluations:
                cols = [f.name for f in dataclasses.fields(Evaluation)]
                rows = [[_csv(getattr(e, c)) for c in cols] for e in record.evaluations]
                write_csv(self.dir / METRICS_CSV, cols, rows)
            if record.metrics is not None:
                final = {FINAL_METRIC_TAG.format(k): record.metrics.value(k) for k in METRIC_NAMES}
                self.tb.add_hparams(hparam_values(record), final, run_name=".", global_step=record.steps)
            record.write(self.dir)

    def _write_sampling_state(self, gan: GAN, arch: str) -> None:
        """sampling.pt: what ``generate()`` needs besides the generator, where the architecture declares any."""
        try:
            state = gan.sampling_state()
        except Exception as exc:  # a plugin may raise anything
            raise PluginError(arch, f"sampling_state raised {type(exc).__name__}: {exc}") from exc
        if state:
            save_torch(self.dir / SAMPLING, state)
        else:
            (self.dir / SAMPLING).unlink(missing_ok=True)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None

    def _write_losses(self, history: list[dict[str, float]], log_every: int) -> None:
        """losses.csv: one row per log interval, the step at its end and the mean of each value over it."""
        conventional = (*REQUIRED_LOSSES, *DIAGNOSTICS)
        keys = [*conventional, *sorted({k for h in history for k in h} - {"step", *conventional})]
        keys = [k for k in keys if any(k in h for h in history)]
        rows = []
        for start in range(0, len(history), log_every):
            chunk = history[start : start + log_every]
            rows.append([chunk[-1]["step"] + 1, *[_csv(mean_of(chunk, k)) for k in keys]])
        write_csv(self.dir / LOSSES_CSV, ["step", *[LOSS_TAGS.get(k, k) for k in keys]], rows)


def hparam_values(record: RunRecord) -> dict[str, Any]:
    """Return the run's protocol and its architecture's hyperparameters, as TensorBoard's HParams view takes them.

    Only what makes runs comparable or different: the protocol, then ``hp.<name>`` for each
    hyperparameter. Operational settings (cadences, folders, threads, checkpoints) change no
    result and stay in run.json. The training precision is ``train_precision``, apart from the
    precision metric.
    """
    c = record.config
    values: dict[str, Any] = {
        "arch": record.arch,
        "budget": f"{c.budget.kind}={c.budget.value:g}",
        "batch_size": c.batch_size,
        "train_subset": "all" if c.train_subset is None else c.train_subset,
        "train_precision": c.precision,
        "seed": c.seed,
        "eval_samples": c.eval_samples,
        "device": c.device,
    }
    # batch_size is one of the hyperparameters too; the protocol's (resolved) value stands for both.
    values.update({f"hp.{k}": v for k, v in c.hparams.items() if k != "batch_size"})
    # Every setting but the seed in one value: the seeds of one setting share it, so the HParams view can sort and
    # filter them together, the seed staying a column of its own.
    values["setting"] = " ".join([record.arch, *(f"{k}={v}" for k, v in values.items() if k not in ("arch", "seed"))])
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in values.items()}


def _csv(x: Any) -> str:
    if x is None:
        return ""
    return f"{x:.6g}" if isinstance(x, float) else str(x)
