"""One seed's run: its data order, progress, status and folder, and what it records when.

The runner (:mod:`bench.training.runner`) owns the model and the loop; a :class:`Run` owns
everything that belongs to one seed: the batch order, the :class:`TrainState` a checkpoint
holds, the status, the run folder and its :class:`Recorder`. The model is passed in where a
run needs it (to evaluate, sample or checkpoint), so one loop can drive several runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from bench import console
from bench.config import RunConfig
from bench.contract import DIAGNOSTICS, GAN, ArchSpec, GANConfig, check_samples, count_parameters
from bench.data import BatchSampler, training_images
from bench.device import peak_memory_bytes
from bench.environment import environment
from bench.machine import load_average, usable_cpus
from bench.errors import UsageError
from bench.layout import Status
from bench.metrics.evaluator import Evaluator
from bench.record import (
    Contention, DiscriminatorMeans, Environment, Evaluation, Losses, Metrics, RecordedConfig, RunRecord, StackInfo,
    TimingRecord,
)
from bench.schema import from_plain
from bench.stop import Stopped, StopRequest
from bench.storage import make_run_dir, remove_stale_temporaries, utc_iso
from bench.timing import block_spread, summarize
from bench.training.recorder import GRID_SIDE, SAMPLE_SEED, Recorder, mean_of, sample_grid
from bench.training.models import ModelState
from bench.training.state import TrainState

#: p90/p10 of the batch times above which a run warns that they vary widely.
SPREAD_WARNING = 1.5


class Run:
    """One seed of one architecture under one budget, from its first batch to its last file."""

    def __init__(self, cfg: RunConfig, spec: ArchSpec, hparams: GANConfig, device: torch.device,
                 evaluator: Evaluator | None, stop: StopRequest, run_dir: Path | None = None,
                 data: Tensor | None = None):
        self.cfg, self.spec, self.hparams, self.device = cfg, spec, hparams, device
        self.evaluator = evaluator
        self.stop = stop
        self.dir = run_dir
        self.budget = cfg.budget()
        if data is None:
            data = training_images(spec.image_size, device, cfg.data_dir, cfg.train_subset)
        self.sampler = BatchSampler(data, hparams.batch_size, cfg.seed)
        per_epoch = self.sampler.batches_per_epoch
        self.total_steps: int | None = {"epochs": int(self.budget.value) * per_epoch,
                                        "steps": int(self.budget.value)}.get(self.budget.kind)
        self.state = TrainState()
        self.status = Status.RUNNING
        self.diverged_at: int | None = None
        self.stop_signal: int | None = None
        self.error: str | None = None
        self.started = utc_iso()
        #: The 1-minute load average as the run was set up: what else the machine was doing.
        self.load_start = load_average()
        self.package, self.package_version = None, None  # what provided the architecture, where known
        self.resumed = False
        self.metrics: Metrics | None = None
        self.grid_z = torch.empty(0)
        self.params: dict[str, int] = {}
        self.recorder: Recorder | None = None  # made by open()
        self.stack: StackInfo | None = None  # the stack of seeds it trains in, if any
        self._pending: list[dict[str, Tensor]] = []

    @property
    def running(self) -> bool:
        return self.status is Status.RUNNING

    def attach(self, gan: GAN) -> None:
        """Take what the run records of the built model: its sample latents and parameter counts."""
        self.grid_z = gan.sample_latent(GRID_SIDE**2, torch.Generator().manual_seed(SAMPLE_SEED))
        self.params = {name: count_parameters(m) for name, m in gan.networks().items()}

    def restore(self, checkpoint: Path, started: str | None) -> ModelState:
        """Continue from ``checkpoint``: take its batch order and progress; return the model and RNG
        states it holds, for the runner to load."""
        self.state, gan_state, rng = TrainState.read(checkpoint, self.device)
        position = self.state.sampler
        if not 0 <= position.batch < self.sampler.batches_per_epoch or position.epoch < 0:
            raise UsageError(f"{checkpoint} is damaged (sampler position epoch {position.epoch}, batch "
                             f"{position.batch}; an epoch has {self.sampler.batches_per_epoch} batches)")
        self.sampler.state = position
        self.started = started or self.started
        self.resumed = True
        return gan_state, rng

    def budget_left(self) -> bool:
        if self.total_steps is not None:
            return self.state.step < self.total_steps
        return self.state.train_wall_s < self.budget.value

    def make_dir(self) -> Path:
        """The run folder, made under ``--out`` unless the run was given one."""
        if self.dir is None:
            self.dir = make_run_dir(self.cfg.out, self.spec.name, self.cfg.seed)
        return self.dir

    def open(self) -> None:
        """Start the run folder's writer; a resumed run first clears what a write killed mid-way left."""
        self.recorder = Recorder(self.make_dir(), self.stop)
        if self.resumed:
            remove_stale_temporaries(self.dir)
        self.recorder.open(self.state.step if self.resumed else None)

    @property
    def first_step(self) -> bool:
        """Whether no step has been taken yet (the first one's output is checked against the contract)."""
        return not self.state.history and not self._pending

    def add_step(self, out: dict[str, Tensor], batch_size: int) -> None:
        """Keep one step's outputs on the device until the next flush."""
        self._pending.append(out)
        self.state.batch_sizes.append(batch_size)
        self.state.step += 1

    @property
    def pending(self) -> bool:
        """Whether step outputs wait on the device for the next flush."""
        return bool(self._pending)

    def flush(self, times_ms: list[float], weights_finite: Callable[[], bool]) -> dict[str, float | None] | None:
        """Pull the pending outputs to the host (one sync), log them and check for divergence.

        ``weights_finite()`` says whether the model's weights are still finite (asked only while
        the losses are).

        Returns the interval's mean D and G loss and images/s for the progress view (None if
        nothing was pending).
        """
        self.state.times_ms.extend(times_ms)
        if not self._pending:
            return None
        keys = list(self._pending[0])
        values = torch.stack([torch.stack([o[k].float().reshape(()) for k in keys]) for o in self._pending]).cpu()
        first = self.state.step - len(self._pending)
        for i, row in enumerate(values.tolist()):
            if self.diverged_at is None and not all(map(math.isfinite, row)):
                self.diverge(first + i)
            self.state.history.append({"step": first + i, **dict(zip(keys, row, strict=True))})
        self._pending.clear()
        if self.diverged_at is None and not weights_finite():
            self.diverge(self.state.step - 1)
        means, median_ms, ips = _interval(self.state, keys, len(values))
        self.recorder.log_interval(means, self.state.step, median_ms, ips)
        return {"d": means.get("d_loss"), "g": means.get("g_loss"), "ips": ips}

    def diverge(self, step: int) -> None:
        self.diverged_at, self.status = step, Status.DIVERGED

    def interrupt(self, signum: int | None) -> None:
        self.status, self.stop_signal = Status.INTERRUPTED, signum

    def evaluate(self, gan: GAN, interruptible: bool = False) -> None:
        """Score the generator now (the caller keeps the time it takes out of the training time).

        An ``interruptible`` evaluation ends at a stop request (:class:`bench.stop.Stopped`).
        """
        m = self.evaluator.evaluate(gan, self.stop if interruptible else None)
        self.state.eval_s += m.eval_s or 0.0
        self.state.last_metrics = m
        evaluation = Evaluation.of(self.state.step, self.state.train_wall_s, m, self.state.train_cpu_s)
        self.state.evaluations.append(evaluation)
        self.recorder.log_evaluation(evaluation)
        who = f"{self.spec.name} seed {self.cfg.seed}" if self.stack is not None else self.spec.name
        console.err.print(
            f"{who}: step {self.state.step}  FID (MNIST classifier features) {m.fid:.3f}  "
            f"modes {m.modes_covered}/10  ({m.eval_s:.1f}s)", soft_wrap=True,
        )

    def checkpoint(self, gan: GAN, rng: dict[str, Tensor] | None = None) -> None:
        """Write everything needed to continue exactly from here (atomically).

        ``rng``: the run's own RNG states when they are not the process's (a seed of a stack).
        """
        self.state.sampler = self.sampler.state
        self.recorder.write_checkpoint(lambda path: self.state.save(path, gan, self.device, rng))

    def evaluated_now(self) -> bool:
        return bool(self.state.evaluations) and self.state.evaluations[-1].step == self.state.step

    def conclude(self, gan: GAN, rng: dict[str, Tensor] | None = None) -> None:
        """The loop has ended: a completed run is evaluated at its last step, an interrupted one checkpointed.

        A stop requested during that evaluation ends it: the run is checkpointed with its training
        done, and ``--resume`` evaluates it and writes its results.
        """
        if self.running:
            self.status = Status.COMPLETED
        if self.status is Status.COMPLETED and self.evaluator is not None and not self.evaluated_now():
            try:
                self.evaluate(gan, interruptible=True)
            except Stopped:
                self.interrupt(self.stop.signal)
        if self.status is Status.INTERRUPTED:
            self.checkpoint(gan, rng)

    def fail(self, exc: BaseException, gan: GAN, rng: dict[str, Tensor] | None = None) -> None:
        """Keep what was earned when training raised: run.json first (small: it says what happened
        even on a full disk), a checkpoint if it was interrupted, then what else can be written."""
        interrupted = isinstance(exc, KeyboardInterrupt)
        self.status = Status.INTERRUPTED if interrupted else Status.FAILED
        self.stop_signal = self.stop.signal if interrupted else None
        self.error = f"{type(exc).__name__}: {exc}"
        self._pending.clear()
        if self.recorder is None:
            return
        writes = [lambda: self.recorder.write_record(self.record()), lambda: self.finish(gan, check=False)]
        if interrupted:
            writes.insert(1, lambda: self.checkpoint(gan, rng))
        for write in writes:
            with contextlib.suppress(Exception):
                write()

    def finish(self, gan: GAN, check: bool = True) -> RunRecord:
        """Write the run's results (samples, generator, CSVs, run.json) and return its record.

        ``check``: hold the final samples to the contract (off when the run has already failed).
        """
        state = self.state
        if self.evaluated_now():
            self.metrics = state.last_metrics
        grid = sample_grid(gan, self.grid_z) if check else _or_none(lambda: sample_grid(gan, self.grid_z))
        if check and self.status in (Status.COMPLETED, Status.INTERRUPTED):
            check_samples(self.spec.name, gan.generate(self.grid_z[:2]), 2, self.spec.image_size)
        record = self.record()
        _warn_if_times_vary(state.times_ms[record.timing.warmup_steps:], self.cfg.threads)
        self.recorder.write_results(record, state.history, self.cfg.log_every, grid, gan)
        if self.status is Status.COMPLETED:
            self.recorder.remove_checkpoint()
        self.recorder.close()
        return record

    def record(self) -> RunRecord:
        """The run record (run.json) as it stands."""
        return run_record(self)


def _interval(state: TrainState, keys: list[str], n: int) -> tuple[dict[str, float], float, float]:
    """The last ``n`` steps' mean of each output, median batch time (ms) and images/s: a log interval."""
    means = {k: mean_of(state.history[-n:], k) for k in keys}
    window = state.times_ms[-n:]
    images = sum(state.batch_sizes[-n:])
    ips = images / (sum(window) / 1e3) if window and sum(window) > 0 else float("nan")
    median_ms = sorted(window)[len(window) // 2] if window else math.nan
    return means, median_ms, ips


def _warn_if_times_vary(measured_ms: list[float], threads: int | None) -> None:
    """Warn, once a run has measured enough batches, when their times vary widely: other work competed."""
    spread = block_spread(measured_ms)
    if len(measured_ms) >= 100 and spread > SPREAD_WARNING:
        fix = "--threads 1, or fewer jobs at once," if (threads or 1) > 1 else "fewer jobs at once,"
        console.warn(f"batch times vary widely (p90/p10 of 10-batch means = {spread:.2f}): other work competed "
                     f"for the CPU; for timings you can compare, try {fix} or run when the machine is quiet")


def _or_none(make: Callable[[], torch.Tensor]) -> torch.Tensor | None:
    """``make()``, or None if it raises: for the files of a run that has already failed."""
    try:
        return make()
    except Exception:
        return None


def run_record(run: Run) -> RunRecord:
    """The run record (run.json) of ``run`` as it stands."""
    state = run.state
    timing = summarize(state.times_ms, state.batch_sizes, run.cfg.warmup_steps, state.train_wall_s)
    last = state.history[-1] if state.history else {}
    tail = state.history[-run.cfg.log_every :]
    references = run.evaluator.reference_points() if run.evaluator is not None and run.metrics else None
    return RunRecord(
        arch=run.spec.name,
        package=run.package, package_version=run.package_version,
        status=run.status,
        diverged_at_step=run.diverged_at,
        error=run.error,
        stop_signal=signal.Signals(run.stop_signal).name if run.stop_signal else None,
        started=run.started,
        updated=utc_iso(),
        config=resolved_config(run),
        params=run.params,
        flops_per_step=state.flops_per_step,
        steps=state.step,
        epochs=state.step / run.sampler.batches_per_epoch,
        images_seen=int(sum(state.batch_sizes)),
        timing=TimingRecord(**dataclasses.asdict(timing), spread_p90_p10=timing.spread, eval_s=state.eval_s),
        losses=Losses(d=last.get("d_loss"), g=last.get("g_loss")),
        discriminator=DiscriminatorMeans(**{k: mean_of(tail, k) for k in DIAGNOSTICS}),
        metrics=run.metrics,
        evaluations=state.evaluations,
        references=references,
        peak_memory_bytes=peak_memory_bytes(run.device),
        env=from_plain(Environment, environment(run.device)),
        contention=_contention(run) if run.device.type == "cpu" else None,
        stack=_stack(run, timing.step_ms_median),
    )


def _stack(run: Run, step_ms: float | None) -> StackInfo | None:
    """The run's stack, with its median step shared out over the stack's seeds."""
    if run.stack is None:
        return None
    per_seed = step_ms / run.stack.size if step_ms is not None and math.isfinite(step_ms) else None
    return dataclasses.replace(run.stack, step_ms_per_seed=per_seed)


def _contention(run: Run) -> Contention:
    state = run.state
    load_end = load_average()
    return Contention(cpu_s=state.train_cpu_s, wall_s=state.train_wall_s, threads=torch.get_num_threads(),
                      usable_cpus=usable_cpus(), load_start=run.load_start, load_end=load_end)


def resolved_config(run: Run) -> RecordedConfig:
    """Every setting of ``run`` with defaults resolved, as recorded in run.json."""
    settings = {**dataclasses.asdict(run.cfg), "device": str(run.device), "batch_size": run.hparams.batch_size,
                "hparams": dataclasses.asdict(run.hparams)}
    return RecordedConfig(**settings, budget=run.budget, image_size=run.spec.image_size, sample_seed=SAMPLE_SEED)
