"""The training loop over one run or a stack's runs: batches, cadences, flushes and divergence.

:class:`~bench.training.runner.Runner` sets a run up and writes what it earned; this is what
happens between its first batch and its last: every batch timed, losses pulled at log
intervals, sample grids, evaluations and checkpoints when they fall due, training time kept
apart from them, and a run that diverges stopped (in a stack, while the others train on).
Nothing here knows which architecture it runs, so timings are comparable across them.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence

import torch

from bench import console
from bench.config import RunConfig
from bench.contract import ArchSpec, check_step_output
from bench.device import autocast
from bench.errors import PluginError
from bench.layout import Status
from bench.stop import StopRequest
from bench.timing import StepTimer
from bench.training.divergence import model_finite
from bench.training.models import Model
from bench.training.recorder import sample_grid
from bench.training.run import Run
from bench.training.stack import StackError


class TrainClock:
    """Training wall-clock seconds, and this process's CPU seconds over the same time: evaluation
    and checkpoints are paused out of both."""

    def __init__(self, elapsed: float = 0.0, cpu_elapsed: float = 0.0):
        self._start = time.perf_counter() - elapsed
        self._cpu_start = time.process_time() - cpu_elapsed

    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def cpu_elapsed(self) -> float:
        return time.process_time() - self._cpu_start

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        paused_at, cpu_paused_at = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self._start += time.perf_counter() - paused_at
            self._cpu_start += time.process_time() - cpu_paused_at


class EvalSchedule:
    """When to evaluate during training: every N batches, or every S seconds of training time."""

    def __init__(self, every_steps: int | None, every_s: float | None, elapsed: float):
        self.every_steps = every_steps
        self.every_s = every_s
        self.next_s = (elapsed // every_s + 1) * every_s if every_s else None

    def due(self, step: int, elapsed: float) -> bool:
        """Whether an evaluation is due now; a due time-based one moves the next one on."""
        if self.every_steps:
            return step % self.every_steps == 0
        if self.every_s and elapsed >= self.next_s:
            self.next_s = (elapsed // self.every_s + 1) * self.every_s
            return True
        return False


def every(n: int | None, step: int) -> bool:
    """Whether a cadence of every ``n`` batches (0 or None: never) falls on ``step``."""
    return bool(n) and step % n == 0


class TrainingLoop:
    """Train ``runs`` through ``model`` until the budget is spent, a stop is requested or every run
    has diverged.

    Args:
        on_stopped: called with a run's index when it diverges while others train on, to write its
            results at once.
    """

    def __init__(self, runs: Sequence[Run], model: Model, cfg: RunConfig, spec: ArchSpec, device: torch.device,
                 stop: StopRequest, on_stopped: Callable[[int], None]):
        self.runs, self.model, self.cfg, self.spec, self.device, self.stop = runs, model, cfg, spec, device, stop
        self.on_stopped = on_stopped
        self.timer = StepTimer(device)
        self.ended: set[int] = set()  # runs whose results on_stopped has written

    def _training(self) -> list[int]:
        """The runs still training."""
        return [i for i, run in enumerate(self.runs) if run.running]

    def run(self) -> None:
        """Train until the budget is spent, a stop is requested or every run has diverged."""
        lead, cfg = self.runs[0], self.cfg
        clock = TrainClock(lead.state.train_wall_s, lead.state.train_cpu_s)
        evaluations = EvalSchedule(cfg.eval_every, cfg.eval_every_s, lead.state.train_wall_s)
        time_budget = lead.budget.value if lead.total_steps is None else None
        label = self.spec.name if len(self.runs) == 1 else f"{self.spec.name} ×{len(self.runs)}"
        with console.TrainingProgress(label, lead.total_steps, time_budget) as progress:
            progress.update(lead.state.step, lead.state.train_wall_s)
            if lead.resumed and lead.budget_left() and every(cfg.eval_every, lead.state.step) \
                    and not lead.evaluated_now():
                for i in self._training():
                    self.runs[i].evaluate(self.model.gan(i))  # the one due when the run was cut short
            while (training := self._training()) and self.runs[training[0]].budget_left():
                lead = self.runs[training[0]]
                if self.stop.requested:
                    for i in training:
                        self.runs[i].interrupt(self.stop.signal)
                    break
                self._train_batch()
                self._after_step(lead.state.step, clock, evaluations, progress)
                progress.update(lead.state.step, lead.state.train_wall_s)
            self._flush(progress)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # the host runs ahead; wall time ends when the device does
            for run in (run for i, run in enumerate(self.runs) if i not in self.ended):
                if run.status is not Status.INTERRUPTED or run.state.step:  # stopped before its first batch: no time
                    run.state.train_wall_s, run.state.train_cpu_s = clock.elapsed(), clock.cpu_elapsed()
            progress.line(lead.state.step, lead.state.train_wall_s, force=True)

    def _after_step(self, step: int, clock: TrainClock, evaluations: EvalSchedule,
                    progress: console.TrainingProgress) -> None:
        """What falls due after batch ``step``: flushing, samples, training time, evaluation, checkpoints."""
        cfg = self.cfg
        if every(cfg.log_every, step):
            self._flush(progress)
        for i in self._training():
            run = self.runs[i]
            if every(cfg.sample_every, step):
                run.recorder.log_samples(sample_grid(self.model.gan(i), run.grid_z), step)
            run.state.train_wall_s, run.state.train_cpu_s = clock.elapsed(), clock.cpu_elapsed()
        training = self._training()
        if training and evaluations.due(step, self.runs[training[0]].state.train_wall_s):
            with clock.paused():
                for i in training:
                    self.runs[i].evaluate(self.model.gan(i))
        if training and every(cfg.checkpoint_every, step):
            with clock.paused():
                self._flush(progress)
                for i in self._training():
                    self.runs[i].checkpoint(self.model.gan(i), self.model.rng_state(i))
                    self.runs[i].recorder.write_record(self.runs[i].record())

    def _train_batch(self) -> None:
        """Draw one batch per run and run the architecture's step on them, timed.

        A critical section: a second Ctrl-C waits for the step and its bookkeeping, so the
        checkpoint it leads to holds a consistent state.
        """
        training = self._training()
        lead = self.runs[training[0]]
        with self.stop.critical():
            self.timer.start()
            reals = [run.sampler.next() for run in self.runs]  # a stopped seed's slice still takes a batch
            try:
                with autocast(self.cfg.precision, self.device):
                    outs = self.model.step(reals, lead.state.step)
            except StackError:
                raise
            except Exception as exc:
                if self.model.size == 1 and self._diverged():
                    return
                raise PluginError(self.spec.name,
                                  f"train_step raised {type(exc).__name__} at step {lead.state.step}: {exc}") from exc
            self.timer.stop()
            if lead.first_step:
                self._check_first_output(outs[training[0]])
            for i in training:
                self.runs[i].add_step(outs[i], reals[i].shape[0])

    def _check_first_output(self, out: dict[str, torch.Tensor]) -> None:
        """The first step's output against the contract (one sync, inside warm-up); non-finite values
        from a model that has already blown up are divergence, which the next flush records."""
        check_step_output(self.spec.name, out, finite=False)
        try:
            check_step_output(self.spec.name, out)
        except PluginError:
            if self.model.size > 1 or self._finite_model():
                raise

    def _finite_model(self) -> bool:
        return model_finite(self.model.gan(0), self.runs[0].grid_z[:2])

    def _diverged(self) -> bool:
        """Whether a step that raised did so because the run had diverged (a loss that refuses
        non-finite inputs, as BCE does); then the run is recorded as diverged at that step."""
        if self._finite_model():
            return False
        run = self.runs[0]
        run.flush(self.timer.drain(), lambda: False)  # the first non-finite loss may be pending
        if run.diverged_at is None:
            run.diverge(run.state.step)
        return True

    def _flush(self, progress: console.TrainingProgress) -> None:
        """Pull every training run's pending outputs; a run that has diverged stops, and while others
        train on, its results are written now."""
        with self.stop.critical():
            times = self.timer.drain()
            flushing = [i for i, run in enumerate(self.runs) if run.running or run.pending]
            finite = functools.cache(self.model.finite)  # one sync, and only if a run asks
            means = {i: self.runs[i].flush(times, lambda i=i: finite()[i]) for i in flushing}
        stopped = [i for i in flushing if not self.runs[i].running]
        for i in stopped:
            self.model.stop(i)
        if stopped and self._training():
            for i in stopped:
                self.on_stopped(i)
                self.ended.add(i)
        shown = next((means[i] for i in flushing if means.get(i) is not None), None)
        if shown is not None:
            lead = self.runs[flushing[0]]
            shown = {k: v for k, v in shown.items() if v is not None}
            if "ips" in shown:
                shown["ips"] *= max(1, len(self._training()))  # the whole stack's images/s
            progress.update(lead.state.step, lead.state.train_wall_s, **shown)
            progress.line(lead.state.step, lead.state.train_wall_s)
