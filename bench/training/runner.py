"""The one training loop every architecture runs through.

The runner owns the model, the clock, the cadences (log, samples, evaluation, checkpoints)
and the stop request; each seed's progress, status and files belong to its
:class:`~bench.training.run.Run`; the architecture owns its networks, optimizers and
training step. Nothing here knows which architecture it is running, so timings are
comparable across architectures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from bench import console
from bench.config import RunConfig
from bench.contract import GAN, ArchSpec, check_step_output
from bench.device import autocast, resolve_device
from bench.environment import default_threads, tune_allocator
from bench.machine import usable_cpus, warn_if_bf16_is_emulated
from bench.errors import PluginError, UsageError
from bench.layout import CHECKPOINT, Status
from bench.metrics.evaluator import Evaluator
from bench.record import RunRecord, read_record
from bench.registry import Entry
from bench.stop import StopRequest
from bench.storage import folder_lock
from bench.timing import StepTimer
from bench.training.checks import build_for_run
from bench.training.cuda_graphs import StepGraph
from bench.training.flops import measure_flops
from bench.training.recorder import sample_grid
from bench.training.divergence import model_finite
from bench.training.run import Run


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


class Runner:
    """Train one architecture under one budget, evaluate it and write its run folder.

    Args:
        cfg: the settings.
        spec: the architecture.
        evaluator: scores the generator; built here when ``cfg.eval`` is on and none is
            given (share one across the runs of a plan).
        run_dir: the run folder, made under ``cfg.out`` when not given.
        stop: the stop request to honour (one is made, and signals handled, when not given).
        entry: the registry entry ``spec`` was loaded from: run.json records its package and
            version (unknown when a spec is given directly).
    """

    def __init__(self, cfg: RunConfig, spec: ArchSpec, evaluator: Evaluator | None = None, *,
                 run_dir: Path | None = None, stop: StopRequest | None = None, entry: Entry | None = None):
        cfg.validate()
        self.spec = spec
        self.stop = stop or StopRequest()
        self._notes: list[str] = []  # shown when training starts, after every check has passed
        self.device = resolve_device(cfg.device)
        if cfg.cuda_graphs and self.device.type != "cuda":
            raise UsageError(f"--cuda-graphs needs a CUDA device, but the run is on {self.device}")
        self.cfg = cfg = dataclasses.replace(cfg, threads=cfg.threads or self._choose_threads())
        torch.set_num_threads(cfg.threads)
        if cfg.precision == "bf16" and self.device.type == "cpu":
            warn_if_bf16_is_emulated()
        tune_allocator()
        overrides = dict(cfg.hparams) | ({} if cfg.batch_size is None else {"batch_size": cfg.batch_size})
        hparams = spec.make_config(overrides)
        # Before seeding: loading the classifier must not shift the training RNG.
        if cfg.eval and evaluator is None:
            evaluator = Evaluator(self.device, n_samples=cfg.eval_samples, data_dir=cfg.data_dir,
                                  image_size=spec.image_size)
        self.run = Run(cfg, spec, hparams, self.device, evaluator, self.stop, run_dir)
        if entry is not None:
            self.run.package, self.run.package_version = entry.package, entry.version
        torch.manual_seed(cfg.seed)
        self.gan: GAN = build_for_run(spec, hparams, cfg, self.device, len(self.run.sampler.data))
        self.gan.batches_per_epoch = self.run.sampler.batches_per_epoch
        self.graphs = StepGraph(self.gan, spec.name) if cfg.cuda_graphs else None
        self.run.attach(self.gan)
        self.timer = StepTimer(self.device)

    def _choose_threads(self) -> int:
        """Without ``--threads``: the CPUs other work leaves free (recorded, so a resumed run keeps it)."""
        if self.device.type != "cpu":
            return torch.get_num_threads()
        threads, why = default_threads()
        if threads < usable_cpus() and why != "OMP_NUM_THREADS":
            self._notes.append(f"using {threads} torch thread(s): {why} (--threads N to choose)")
        return threads

    @classmethod
    def resume(cls, run_dir: str | Path, load_spec: Callable[[str], ArchSpec], evaluator: Evaluator | None = None,
               stop: StopRequest | None = None, entry_of: Callable[[str], Entry] | None = None) -> Runner:
        """Rebuild the run in ``run_dir`` from its run.json and checkpoint, ready to continue.

        Args:
            load_spec: ``name -> ArchSpec`` (the registry's ``load``).
            entry_of: ``name -> Entry`` (the registry's ``entry``), for the package that
                provides the architecture now; without it, run.json keeps the one it recorded.
        """
        run_dir = Path(run_dir)
        record = read_record(run_dir)
        checkpoint = run_dir / CHECKPOINT
        if not checkpoint.is_file():
            raise UsageError(f"{run_dir} has no {CHECKPOINT} to resume from (status: {record.status})")
        cfg = RunConfig.from_settings(dataclasses.asdict(record.config))
        entry = entry_of(record.arch) if entry_of is not None else None
        runner = cls(cfg, load_spec(record.arch), evaluator, run_dir=run_dir, stop=stop, entry=entry)
        if entry is None:
            runner.run.package, runner.run.package_version = record.package, record.package_version
        runner.run.restore(checkpoint, runner.gan, record.started)
        return runner

    def train(self, on_start: Callable[[Path], None] | None = None) -> RunRecord:
        """Train to the budget, evaluate, write every result file and return the run record.

        ``on_start(run_dir)`` is called once the run folder exists, before the first batch.
        """
        run = self.run
        for note in self._notes:
            console.err.print(note, soft_wrap=True, markup=False, highlight=False)
        what = f"training {self.spec.name} seed {self.cfg.seed}"
        with self.stop.handling_signals():
            if run.state.flops_per_step is None:  # before the folder: a step that cannot run leaves none behind
                run.state.flops_per_step = measure_flops(self.gan, run.sampler.data[: run.hparams.batch_size],
                                                         self.spec.name)
            with folder_lock(run.make_dir(), what):
                return self._train_in_folder(on_start)

    def _train_in_folder(self, on_start: Callable[[Path], None] | None) -> RunRecord:
        """Open the run folder, train, evaluate and write the results, keeping what was earned on an error."""
        run = self.run
        run.open()
        if on_start is not None:
            on_start(run.dir)
        if not run.resumed:
            run.recorder.write_record(run.record())  # status "running": a crash leaves a trace
        try:
            self._loop()
            run.conclude(self.gan)
            return run.finish(self.gan)
        except BaseException as exc:
            run.fail(exc, self.gan)
            raise

    def _loop(self) -> None:
        """Train until the budget is spent, a stop is requested or the run diverges."""
        run, cfg = self.run, self.cfg
        clock = TrainClock(run.state.train_wall_s, run.state.train_cpu_s)
        evaluations = EvalSchedule(cfg.eval_every, cfg.eval_every_s, run.state.train_wall_s)
        time_budget = run.budget.value if run.total_steps is None else None
        with console.TrainingProgress(self.spec.name, run.total_steps, time_budget) as progress:
            progress.update(run.state.step, run.state.train_wall_s)
            if run.resumed and run.budget_left() and every(cfg.eval_every, run.state.step) and not run.evaluated_now():
                run.evaluate(self.gan)  # the one due when the run was cut short
            while run.budget_left() and run.running:
                if self.stop.requested:
                    run.interrupt(self.stop.signal)
                    break
                self._train_batch()
                step = run.state.step
                if every(cfg.log_every, step):
                    self._flush(progress)
                if every(cfg.sample_every, step):
                    run.recorder.log_samples(sample_grid(self.gan, run.grid_z), step)
                run.state.train_wall_s, run.state.train_cpu_s = clock.elapsed(), clock.cpu_elapsed()
                if run.running and evaluations.due(step, run.state.train_wall_s):
                    with clock.paused():
                        run.evaluate(self.gan)
                if run.running and every(cfg.checkpoint_every, step):
                    with clock.paused():
                        self._flush(progress)
                        run.checkpoint(self.gan)
                        run.recorder.write_record(run.record())
                progress.update(step, run.state.train_wall_s)
            self._flush(progress)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # the host runs ahead; wall time ends when the device does
            if run.status is not Status.INTERRUPTED or run.state.step:  # stopped before its first batch: no time
                run.state.train_wall_s, run.state.train_cpu_s = clock.elapsed(), clock.cpu_elapsed()
            progress.line(run.state.step, run.state.train_wall_s, force=True)

    def _train_batch(self) -> None:
        """Draw one batch and run the architecture's step on it, timed.

        A critical section: a second Ctrl-C waits for the step and its bookkeeping, so the
        checkpoint it leads to holds a consistent state.
        """
        run = self.run
        with self.stop.critical():
            self.timer.start()
            real = run.sampler.next()
            try:
                with autocast(self.cfg.precision, self.device):
                    if self.graphs is not None:
                        out = self.graphs.step(real, run.state.step)
                    else:
                        out = self.gan.train_step(real, run.state.step)
            except Exception as exc:
                if self._diverged():
                    return
                raise PluginError(self.spec.name,
                                  f"train_step raised {type(exc).__name__} at step {run.state.step}: {exc}") from exc
            self.timer.stop()
            if run.first_step:
                self._check_first_output(out)
            run.add_step(out, real.shape[0])

    def _check_first_output(self, out: dict[str, torch.Tensor]) -> None:
        """The first step's output against the contract (one sync, inside warm-up); non-finite values
        from a model that has already blown up are divergence, which the next flush records."""
        check_step_output(self.spec.name, out, finite=False)
        try:
            check_step_output(self.spec.name, out)
        except PluginError:
            if self._finite_model():
                raise

    def _finite_model(self) -> bool:
        return model_finite(self.gan, self.run.grid_z[:2])

    def _diverged(self) -> bool:
        """Whether a step that raised did so because the run had diverged (a loss that refuses
        non-finite inputs, as BCE does); then the run is recorded as diverged at that step."""
        if self._finite_model():
            return False
        run = self.run
        run.flush(self.timer.drain(), self.gan)  # the first non-finite loss may be pending
        if run.diverged_at is None:
            run.diverge(run.state.step)
        return True

    def _flush(self, progress: console.TrainingProgress) -> None:
        with self.stop.critical():
            means = self.run.flush(self.timer.drain(), self.gan)
        if means is not None:
            progress.update(self.run.state.step, self.run.state.train_wall_s,
                            **{k: v for k, v in means.items() if v is not None})
            progress.line(self.run.state.step, self.run.state.train_wall_s)
