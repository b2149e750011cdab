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
import functools
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from bench import console
from bench.config import RunConfig
from bench.contract import GAN, ArchSpec, GANConfig, check_step_output
from bench.data import training_images
from bench.device import autocast, resolve_device
from bench.environment import default_threads, tune_allocator
from bench.machine import usable_cpus, warn_if_bf16_is_emulated
from bench.errors import PluginError, UsageError
from bench.layout import CHECKPOINT, Status
from bench.metrics.evaluator import Evaluator
from bench.record import RunRecord, StackInfo, read_record
from bench.registry import Entry
from bench.stop import StopRequest
from bench.storage import folder_lock
from bench.timing import StepTimer
from bench.training.checks import build_for_run
from bench.training.cuda_graphs import StepGraph
from bench.training.flops import measure_flops
from bench.training.recorder import sample_grid
from bench.training.divergence import model_finite
from bench.training.models import Model, SingleModel, StackModel
from bench.training.run import Run
from bench.training.stack import SeedStack, StackError
from bench.training.state import damaged_model


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
    """Train one architecture under one budget, evaluate it and write its run folder; or, given
    ``stack_seeds``, train those seeds as one stacked model, each seed still a run of its own.

    Args:
        cfg: the settings (of the first seed, for a stack).
        spec: the architecture.
        evaluator: scores the generator; built here when ``cfg.eval`` is on and none is
            given (share one across the runs of a plan).
        run_dir: the run folder, made under ``cfg.out`` when not given.
        stop: the stop request to honour (one is made, and signals handled, when not given).
        entry: the registry entry ``spec`` was loaded from: run.json records its package and
            version (unknown when a spec is given directly).
        stack_seeds: train these seeds as one :class:`~bench.training.stack.SeedStack`; seed
            ``s`` is the run ``cfg`` with ``seed=s`` makes, in folder ``run_dirs[i]`` (made
            under ``cfg.out`` when None).
        stack_id: the stack's name in its runs' run.json (a new one when not given).

    Raises:
        StackError: ``spec`` cannot be stacked (from the class, a built copy, or the first
            stacked step, whose run folders are then removed): train the seeds separately.
    """

    def __init__(self, cfg: RunConfig, spec: ArchSpec, evaluator: Evaluator | None = None, *,
                 run_dir: Path | None = None, stop: StopRequest | None = None, entry: Entry | None = None,
                 stack_seeds: Sequence[int] | None = None, run_dirs: Sequence[Path | None] | None = None,
                 stack_id: str | None = None):
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
        seeds = list(stack_seeds) if stack_seeds is not None else [cfg.seed]
        dirs = list(run_dirs) if run_dirs is not None else [run_dir] * len(seeds)
        data = training_images(spec.image_size, self.device, cfg.data_dir, cfg.train_subset)
        self.runs = [Run(dataclasses.replace(cfg, seed=seed), spec, hparams, self.device, evaluator, self.stop, d, data)
                     for seed, d in zip(seeds, dirs, strict=True)]
        for run in self.runs:
            if entry is not None:
                run.package, run.package_version = entry.package, entry.version
        n_images = len(data)

        def build(spec: ArchSpec, hparams: GANConfig, device: torch.device) -> GAN:
            return build_for_run(spec, hparams, cfg, device, n_images)

        if stack_seeds is not None:
            self.model: Model = StackModel(SeedStack(spec, hparams, seeds, self.device, build=build))
            self.stack_id = stack_id or f"{spec.name}-{uuid.uuid4().hex[:12]}"
            if cfg.cuda_graphs:
                self._notes.append(f"{spec.name}: stacked steps are not captured as CUDA graphs; "
                                   "--cuda-graphs applies to runs trained alone")
        else:
            torch.manual_seed(cfg.seed)
            gan = build(spec, hparams, self.device)
            self.model = SingleModel(gan, self.device, StepGraph(gan, spec.name) if cfg.cuda_graphs else None)
            self.stack_id = None
        self.model.set_batches_per_epoch(self.run.sampler.batches_per_epoch)
        for i, run in enumerate(self.runs):
            run.attach(self.model.gan(i))
        self.timer = StepTimer(self.device)
        self.records: list[RunRecord | None] = [None] * len(self.runs)

    @property
    def run(self) -> Run:
        """The first (for a single run, the only) run."""
        return self.runs[0]

    @property
    def gan(self) -> GAN:
        """The first run's GAN."""
        return self.model.gan(0)

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
        """Rebuild the run in ``run_dir`` from its run.json and checkpoint, ready to continue; a seed of
        a stack resumes its whole stack (the members that have a checkpoint to continue from).

        Args:
            load_spec: ``name -> ArchSpec`` (the registry's ``load``).
            entry_of: ``name -> Entry`` (the registry's ``entry``), for the package that
                provides the architecture now; without it, run.json keeps the one it recorded.
        """
        run_dir = Path(run_dir)
        record = read_record(run_dir)
        if not (run_dir / CHECKPOINT).is_file():
            raise UsageError(f"{run_dir} has no {CHECKPOINT} to resume from (status: {record.status})")
        cfg = RunConfig.from_settings(dataclasses.asdict(record.config))
        entry = entry_of(record.arch) if entry_of is not None else None
        spec = load_spec(record.arch)
        if record.stack is None:
            runner = cls(cfg, spec, evaluator, run_dir=run_dir, stop=stop, entry=entry)
        else:
            members = stack_members(run_dir, record)
            runner = cls(cfg, spec, evaluator, stop=stop, entry=entry, stack_seeds=[r.seed for _, r in members],
                         run_dirs=[d for d, _ in members], stack_id=record.stack.id)
        states = []
        for run in runner.runs:
            previous = read_record(run.dir)
            if entry is None:
                run.package, run.package_version = previous.package, previous.package_version
            states.append(run.restore(run.dir / CHECKPOINT, previous.started))
        with damaged_model(run_dir / CHECKPOINT):
            runner.model.load(states)
        return runner

    def train(self, on_start: Callable[[Path], None] | None = None) -> RunRecord:
        """Train to the budget, evaluate, write every result file and return the (first) run's record;
        every run's is in :attr:`records`.

        ``on_start(run_dir)`` is called for each run once its folder exists, before the first batch.
        """
        for note in self._notes:
            console.err.print(note, soft_wrap=True, markup=False, highlight=False)
        seeds = ",".join(str(run.cfg.seed) for run in self.runs)
        what = f"training {self.spec.name} seed{'s' if len(self.runs) > 1 else ''} {seeds}"
        with self.stop.handling_signals():
            lead = self.run
            if lead.state.flops_per_step is None:  # before the folder: a step that cannot run leaves none behind
                flops = measure_flops(self.model.gan(0), lead.sampler.data[: lead.hparams.batch_size], self.spec.name)
                for run in self.runs:
                    run.state.flops_per_step = flops
            dirs = [run.make_dir() for run in self.runs]
            if self.stack_id is not None:
                for run in self.runs:
                    run.stack = StackInfo(id=self.stack_id, seeds=[r.cfg.seed for r in self.runs],
                                          size=len(self.runs), runs=[os.path.relpath(d, run.dir.parent) for d in dirs])
            with contextlib.ExitStack() as locks:
                for d in dirs:
                    locks.enter_context(folder_lock(d, what))
                self._train_in_folders(on_start)
        return self.records[0]

    def _train_in_folders(self, on_start: Callable[[Path], None] | None) -> None:
        """Open the run folders, train, evaluate and write the results, keeping what was earned on an error."""
        for run in self.runs:
            run.open()
            if on_start is not None:
                on_start(run.dir)
            if not run.resumed:
                run.recorder.write_record(run.record())  # status "running": a crash leaves a trace
        try:
            self._loop()
            for i in range(len(self.runs)):
                self._end(i)
        except StackError:
            self._remove_new_folders()  # refused on its first step: nothing was earned
            raise
        except BaseException as exc:
            for i, run in enumerate(self.runs):
                if self.records[i] is None:
                    run.fail(exc, self.model.gan(i), self.model.rng_state(i))
            raise

    def _remove_new_folders(self) -> None:
        """Remove the run folders this runner made (none of a resumed stack)."""
        if not any(run.resumed for run in self.runs):
            for run in self.runs:
                run.recorder.close()
                shutil.rmtree(run.dir, ignore_errors=True)

    def _end(self, i: int) -> None:
        """Run ``i`` has stopped training: evaluate or checkpoint it and write its results (once)."""
        if self.records[i] is None:
            gan = self.model.gan(i)
            self.runs[i].conclude(gan, self.model.rng_state(i))
            self.records[i] = self.runs[i].finish(gan)

    def _training(self) -> list[int]:
        """The runs still training."""
        return [i for i, run in enumerate(self.runs) if run.running]

    def _loop(self) -> None:
        """Train until the budget is spent, a stop is requested or every run has diverged."""
        lead, cfg = self.run, self.cfg
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
            for run in (run for i, run in enumerate(self.runs) if self.records[i] is None):
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
        return model_finite(self.gan, self.run.grid_z[:2])

    def _diverged(self) -> bool:
        """Whether a step that raised did so because the run had diverged (a loss that refuses
        non-finite inputs, as BCE does); then the run is recorded as diverged at that step."""
        if self._finite_model():
            return False
        run = self.run
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
                self._end(i)
        shown = next((means[i] for i in flushing if means.get(i) is not None), None)
        if shown is not None:
            lead = self.runs[flushing[0]]
            shown = {k: v for k, v in shown.items() if v is not None}
            if "ips" in shown:
                shown["ips"] *= max(1, len(self._training()))  # the whole stack's images/s
            progress.update(lead.state.step, lead.state.train_wall_s, **shown)
            progress.line(lead.state.step, lead.state.train_wall_s)


def stack_members(run_dir: Path, record: RunRecord) -> list[tuple[Path, RunRecord]]:
    """The run folders (and records) of the stack ``run_dir`` trained in that can continue: those with a checkpoint.

    Raises:
        UsageError: a member folder named in run.json is missing, or belongs to another stack.
    """
    members = []
    for rel in record.stack.runs:
        path = (run_dir.parent / rel).resolve()
        if not path.is_dir():
            raise UsageError(f"{run_dir} trained in stack {record.stack.id}, whose run folder {path} is missing; "
                             "the stack cannot be resumed")
        other = read_record(path)
        if other.stack is None or other.stack.id != record.stack.id:
            raise UsageError(f"{path} is not a run of stack {record.stack.id}; the stack cannot be resumed")
        if (path / CHECKPOINT).is_file():
            members.append((path, other))
    return members
