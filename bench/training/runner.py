"""The one runner every architecture trains through: set a run (or a stack's runs) up, train it,
write what it earned.

The runner owns the settings, the model (:mod:`bench.training.models`), the run folders and the
stop request; :class:`~bench.training.loop.TrainingLoop` runs the batches and the cadences
between the first batch and the last; each seed's progress, status and files belong to its
:class:`~bench.training.run.Run`; the architecture owns its networks, optimizers and training
step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bench import console
from bench.config import RunConfig, check_eval_scale
from bench.contract import GAN, ArchSpec, GANConfig
from bench.data import training_images
from bench.device import resolve_device
from bench.environment import run_threads, tune_allocator
from bench.machine import usable_cpus, warn_if_bf16_is_emulated
from bench.errors import UsageError
from bench.layout import CHECKPOINT, RUN_JSON, Status
from bench.metrics.evaluator import Evaluator
from bench.record import RunRecord, StackInfo, read_record
from bench.registry import Entry
from bench.stop import StopRequest
from bench.runfolder import DAMAGED_HINT, mark_ended, member_problem, set_aside
from bench.storage import check_folder, check_not_held, folder_lock
from bench.training.checks import build_for_run
from bench.training.cuda_graphs import StepGraph
from bench.training.flops import measure_flops
from bench.training.loop import TrainingLoop
from bench.training.models import Model, SingleModel, StackModel
from bench.training.run import Run
from bench.training.stack import SeedStack, StackError
from bench.training.state import damaged_model


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
        check_eval_scale(cfg.eval_scale, spec.image_size, spec.name)
        if cfg.eval and evaluator is None:
            evaluator = Evaluator(self.device, n_samples=cfg.eval_samples, data_dir=cfg.data_dir,
                                  image_size=cfg.eval_scale or spec.image_size)
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
        threads, why = run_threads(self.device)
        if self.device.type == "cpu" and threads < usable_cpus() and why != "OMP_NUM_THREADS":
            self._notes.append(f"using {threads} torch thread(s): {why} (--threads N to choose)")
        return threads

    @classmethod
    def resume(cls, run_dir: str | Path, load_spec: Callable[[str], ArchSpec], evaluator: Evaluator | None = None,
               stop: StopRequest | None = None, entry_of: Callable[[str], Entry] | None = None,
               skip_damaged: bool = False) -> Runner:
        """Rebuild the run in ``run_dir`` from its run.json and checkpoint, ready to continue; a seed of
        a stack resumes its whole stack (the members that have a checkpoint to continue from).

        Every folder is checked first (no links, no live process holding it, checkpoints whose
        checksums match), before anything is written.

        Args:
            load_spec: ``name -> ArchSpec`` (the registry's ``load``).
            entry_of: ``name -> Entry`` (the registry's ``entry``), for the package that
                provides the architecture now; without it, run.json keeps the one it recorded.
            skip_damaged: resume a stack without its members whose folder is missing or whose
                checkpoint is damaged (those are marked failed) instead of refusing it.
        """
        run_dir = Path(run_dir)
        check_folder(run_dir)
        record = read_record(run_dir)
        check_resumable(run_dir, record)
        cfg = RunConfig.from_settings(dataclasses.asdict(record.config))
        entry = entry_of(record.arch) if entry_of is not None else None
        spec = load_spec(record.arch)
        if record.stack is None:
            members = [(run_dir, record)]
            runner = cls(cfg, spec, evaluator, run_dir=run_dir, stop=stop, entry=entry)
        else:
            members = stack_members(run_dir, record, skip_damaged)
            runner = cls(cfg, spec, evaluator, stop=stop, entry=entry, stack_seeds=[r.seed for _, r in members],
                         run_dirs=[d for d, _ in members], stack_id=record.stack.id)
        states = []
        for run, (_, previous) in zip(runner.runs, members, strict=True):
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
            self.loop = TrainingLoop(self.runs, self.model, self.cfg, self.spec, self.device, self.stop, self._end)
            self.loop.run()
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

def check_resumable(run_dir: Path, record: RunRecord) -> None:
    """Refuse a run folder that cannot be continued, before anything is written: one a live process holds, or
    one without a checkpoint (a run killed before its first is given its final status here).

    Raises:
        UsageError: one line saying why, and what to do.
    """
    check_not_held(run_dir)
    if (run_dir / CHECKPOINT).is_file():
        return
    again = f"start it again with: {console.program()} run --arch {record.arch} --seed {record.seed}"
    if record.status is Status.RUNNING:
        mark_ended(run_dir, Status.INTERRUPTED, "its process ended before the first checkpoint (killed?)")
        raise UsageError(f"{run_dir} ended before its first checkpoint (its process was killed), so there is "
                         f"nothing to resume; {again} (and its other options, in {RUN_JSON})")
    raise UsageError(f"{run_dir} has no {CHECKPOINT} to resume from (status: {record.status}); {again}")


def stack_members(run_dir: Path, record: RunRecord, skip_damaged: bool = False) -> list[tuple[Path, RunRecord]]:
    """The run folders (and records) of the stack ``run_dir`` trained in that can continue: those with a checkpoint.

    A member whose folder is missing or whose checkpoint is damaged is refused, or with
    ``skip_damaged`` left out (a damaged one is marked failed and its checkpoint set aside).

    Raises:
        UsageError: a member is missing or damaged (without ``skip_damaged``), lies outside the
            folder that holds ``run_dir``, or belongs to another stack.
    """
    members = []
    for seed, rel in zip(record.stack.seeds, record.stack.runs, strict=False):
        path = run_dir.parent / rel
        why = member_problem(run_dir, rel, seed, record.stack.id)
        if why:
            if not skip_damaged:
                raise UsageError(f"{why}; seed {seed} {DAMAGED_HINT}")
            if path.is_dir():
                set_aside(path, why)
            console.warn(f"{why}; the other seeds of the stack resume without it")
            continue
        other = read_record(path)
        if other.stack is None or other.stack.id != record.stack.id:
            raise UsageError(f"{path} is not a run of stack {record.stack.id}; the stack cannot be resumed")
        if (path / CHECKPOINT).is_file():
            members.append((path.resolve(), other))
    if not members:
        raise UsageError(f"no seed of stack {record.stack.id} has a {CHECKPOINT} to resume from")
    return members
