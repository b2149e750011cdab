"""One planned run, new or resumed, through the same runner as ``bench run``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench import console
from bench.config import RunConfig
from bench.contract import ArchSpec
from bench.device import resolve_device
from bench.errors import PluginError
from bench.layout import CHECKPOINT
from bench.metrics.evaluator import Evaluator
from bench.plans.plan import Outcome, PlanEntry
from bench.registry import default_registry
from bench.stop import StopRequest
from bench.training.runner import Runner


class Evaluators:
    """The evaluators of a plan's runs: one per image size (same device, same protocol), built on first use.

    A plan shares them across its runs; each is built before the run it serves seeds torch.
    """

    def __init__(self, settings: Mapping[str, Any]):
        self.settings = settings
        self._built: dict[int, Evaluator] = {}

    def for_spec(self, spec: ArchSpec) -> Evaluator | None:
        """The evaluator of ``spec``'s runs, or None with --no-eval."""
        if not self.settings.get("eval", True):
            return None
        if spec.image_size not in self._built:
            self._built[spec.image_size] = Evaluator(
                resolve_device(self.settings["device"]), n_samples=self.settings["eval_samples"],
                data_dir=self.settings.get("data_dir"), image_size=spec.image_size)
        return self._built[spec.image_size]


def execute(settings: Mapping[str, Any], entry: PlanEntry, folder: Path, evaluators: Evaluators,
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
            runner = Runner.resume(previous, registry.load, evaluator, stop, entry_of=registry.entry)
        else:
            cfg = RunConfig.from_settings(settings, arch=entry.arch, seed=entry.seed, out=str(folder),
                                          hparams={**settings.get("hparams", {}), **entry.hparams})
            runner = Runner(cfg, spec, evaluator, stop=stop, entry=registry.entry(entry.arch), run_dir=previous)
        record = runner.train(on_start)
    except PluginError as exc:
        console.error(str(exc))
        return Outcome.failed(str(exc), str(runner.run.dir) if runner and runner.run.dir else None)
    run = runner.run
    return Outcome(record.status, str(run.dir), record.error, run.stop_signal, record.diverged_at_step)


def check_plan(settings: Mapping[str, Any], entries: list[PlanEntry]) -> None:
    """Fail fast on settings, names or hyperparameters that cannot work, before hours of training."""
    RunConfig.from_settings(settings, arch="-").validate()
    registry = default_registry()
    for arch in sorted({e.arch for e in entries}):
        spec = registry.load(arch)
        for entry in (e for e in entries if e.arch == arch):
            spec.make_config({**settings.get("hparams", {}), **entry.hparams})
