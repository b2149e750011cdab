"""Planned runs, new or resumed, through the same runner as ``bench run``: one at a time, or
several seeds as one stack."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from bench import console
from bench.config import PlanSettings, check_eval_scale
from bench.contract import ArchSpec
from bench.device import resolve_device
from bench.errors import PluginError, UsageError
from bench.layout import CHECKPOINT, PLAN
from bench.metrics.evaluator import Evaluator
from bench.plans.plan import Outcome, Plan, PlanEntry
from bench.registry import default_registry
from bench.stop import StopRequest
from bench.training.runner import Runner
from bench.training.stack import StackError


class Evaluators:
    """The evaluators of a plan's runs: one per image size (same device, same protocol), built on first use.

    A plan shares them across its runs; each is built before the run it serves seeds torch.
    """

    #: The plan settings the evaluators follow: plans that agree on these can share them.
    SETTINGS = ("eval", "device", "eval_samples", "data_dir", "eval_scale")

    def __init__(self, settings: PlanSettings):
        self.settings = settings
        self._built: dict[int, Evaluator] = {}

    def for_spec(self, spec: ArchSpec) -> Evaluator | None:
        """The evaluator of ``spec``'s runs (at the plan's evaluation scale, else its own side), or None with
        --no-eval."""
        if not self.settings.eval:
            return None
        scale = self.settings.eval_scale or spec.image_size
        if scale not in self._built:
            self._built[scale] = Evaluator(
                resolve_device(self.settings.device), n_samples=self.settings.eval_samples,
                data_dir=self.settings.data_dir, image_size=scale)
        return self._built[scale]


def execute(settings: PlanSettings, entry: PlanEntry, folder: Path, evaluators: Evaluators,
            stop: StopRequest, on_start: Callable[[Path], None] | None = None) -> Outcome:
    """Run ``entry`` in a new folder under ``folder``, or resume it from the checkpoint in its ``run_dir``.

    An entry whose ``run_dir`` exists without a checkpoint (made empty by a backend that names its
    runs' folders before they start) trains afresh there. The run folder is exactly what
    ``bench run`` writes. ``on_start(run_dir)`` is called once the folder exists, before training.
    A plugin's error ends this run (status ``failed``) without raising.
    """
    registry = default_registry()
    previous = Path(entry.run_dir) if entry.run_dir else None
    runner = None
    try:
        spec = registry.load(entry.arch)
        evaluator = evaluators.for_spec(spec)
        if previous is not None and (previous / CHECKPOINT).is_file():
            runner = Runner.resume(previous, registry.load, evaluator, stop, entry_of=registry.entry,
                                   skip_damaged=True)  # the plan driver refused or set aside damaged runs
        else:
            cfg = settings.run_config(arch=entry.arch, seed=entry.seed, out=str(folder),
                                      hparams={**settings.hparams, **entry.hparams})
            runner = Runner(cfg, spec, evaluator, stop=stop, entry=registry.entry(entry.arch), run_dir=previous)
        record = runner.train(on_start)
    except PluginError as exc:
        console.error(str(exc))
        return Outcome.failed(str(exc), str(runner.run.dir) if runner and runner.run.dir else None)
    run = runner.run
    return Outcome(record.status, str(run.dir), record.error, run.stop_signal, record.diverged_at_step)


def execute_stack(settings: PlanSettings, entries: list[PlanEntry], folder: Path, evaluators: Evaluators,
                  stop: StopRequest, on_start: Callable[[int, Path], None] | None = None
                  ) -> dict[int, Outcome] | StackError:
    """Run ``entries`` (one architecture and hyperparameter point, distinct seeds) as one stack of seeds,
    or resume the stack their run folders trained in; return each seed's outcome.

    Each seed's run folder is exactly what ``bench run --seed`` writes, plus the stack it trained
    in. ``on_start(seed, run_dir)`` is called as each folder is opened. A plugin's error fails
    every seed of the stack without raising.

    Returns:
        the outcomes by seed, or the :class:`StackError` that says why the architecture cannot be
        stacked (nothing was written: train the seeds separately).
    """
    registry = default_registry()
    runner = None
    try:
        spec = registry.load(entries[0].arch)
        evaluator = evaluators.for_spec(spec)
        resumable = [Path(e.run_dir) for e in entries if e.run_dir and (Path(e.run_dir) / CHECKPOINT).is_file()]
        if resumable:
            runner = Runner.resume(resumable[0], registry.load, evaluator, stop, entry_of=registry.entry,
                                   skip_damaged=True)  # the plan driver refused or set aside damaged runs
        else:
            cfg = settings.run_config(arch=entries[0].arch, seed=entries[0].seed, out=str(folder),
                                      hparams={**settings.hparams, **entries[0].hparams})
            runner = Runner(cfg, spec, evaluator, stop=stop, entry=registry.entry(entries[0].arch),
                            stack_seeds=[e.seed for e in entries],
                            run_dirs=[Path(e.run_dir) if e.run_dir else None for e in entries])

        def opened(run_dir: Path) -> None:
            if on_start is not None:
                on_start(next(r.cfg.seed for r in runner.runs if r.dir == run_dir), run_dir)

        runner.train(opened)
    except StackError as exc:
        return exc
    except PluginError as exc:
        console.error(str(exc))
        runs = runner.runs if runner is not None else []
        return {r.cfg.seed: Outcome.failed(str(exc), str(r.dir) if r.dir else None) for r in runs} or \
            {e.seed: Outcome.failed(str(exc)) for e in entries}
    return {run.cfg.seed: Outcome(record.status, str(run.dir), record.error, run.stop_signal, record.diverged_at_step)
            for run, record in zip(runner.runs, runner.records, strict=True)}


def check_plan(settings: PlanSettings, entries: list[PlanEntry]) -> None:
    """Fail fast on names or hyperparameters that cannot work, before hours of training: every architecture
    loads, takes the evaluation scale and every entry's hyperparameters. (The settings themselves were checked
    where they entered: :func:`bench.cli.options.plan_settings`, :func:`load_plan`.)"""
    registry = default_registry()
    for arch in sorted({e.arch for e in entries}):
        spec = registry.load(arch)
        check_eval_scale(settings.eval_scale, spec.image_size, arch)
        for entry in (e for e in entries if e.arch == arch):
            spec.make_config({**settings.hparams, **entry.hparams})


def check_new_comparison(settings: PlanSettings, archs: list[str], seeds: list[int]) -> PlanSettings:
    """A new comparison's settings, once its names and hyperparameters are checked (before anything starts):
    a comparison that mixes image sides is scored at the larger one (:func:`common_scale`)."""
    settings = common_scale(settings, archs)
    check_plan(settings, [PlanEntry(arch=a, seed=s) for a in archs for s in seeds])
    return settings


def load_plan(folder: str) -> Plan:
    """A plan read back to continue: its settings checked as the command line's are (its file may have been
    edited), then its entries as a new plan's."""
    plan = Plan.load(folder)
    try:
        plan.settings.validate()
    except UsageError as exc:
        raise UsageError(f"{Path(folder) / PLAN}: {exc}") from None
    check_plan(plan.settings, plan.runs)
    return plan


def common_scale(settings: PlanSettings, archs: list[str]) -> PlanSettings:
    """The settings with an evaluation scale where the plan mixes image sides and none was given: the largest
    side, for all, so that every architecture's FIDs compare (said in one line)."""
    if settings.eval_scale is not None:
        return settings
    registry = default_registry()
    sides = {arch: registry.load(arch).image_size for arch in archs}
    if len(set(sides.values())) == 1:
        return settings
    scale = max(sides.values())
    smaller = ", ".join(a for a, side in sides.items() if side < scale)
    console.err.print(f"evaluating every architecture at the {scale}x{scale} scale (--eval-scale {scale}): "
                      f"{smaller} images are brought to {scale}x{scale} as the others' training data are",
                      soft_wrap=True, markup=False, highlight=False)
    return dataclasses.replace(settings, eval_scale=scale)
