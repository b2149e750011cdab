"""``bench compare``: several architectures and seeds, one protocol, one machine.

Every (architecture, seed) pair runs through the same runner on the same device, one after
another, each in its own run folder inside one comparison folder (so TensorBoard overlays
them), under one budget. The plan and each run's status live in ``compare.json``, written
atomically after every change, so ``--resume`` skips what is done and continues the run
that was interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Callable

from bench import console
from bench.errors import BenchError, PluginError, UsageError
from bench.record import read_record
from bench.results import make_run_dir, make_unique_dir, utc_iso, utc_stamp, write_json

PLAN = "compare.json"
#: Statuses after which a planned run is not started again.
FINISHED = ("completed", "diverged", "failed")


def parse_seeds(text: str) -> list[int]:
    """``3`` means seeds 0, 1, 2; ``0,5,7`` means those seeds."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes a count (3) or a list (0,5,7), got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds needs at least one seed and no repeats, got {text!r}")
    return seeds


def parse_archs(text: str) -> list[str]:
    archs = [a.strip() for a in text.split(",") if a.strip()]
    if not archs or len(set(archs)) != len(archs):
        raise argparse.ArgumentTypeError(f"--arch takes a comma-separated list without repeats, got {text!r}")
    return archs


class Comparison:
    """The plan of a comparison and where each of its runs stands."""

    def __init__(self, folder: Path, plan: dict[str, Any]):
        self.folder = folder
        self.plan = plan

    @classmethod
    def create(cls, out: str, archs: list[str], seeds: list[int], settings: dict[str, Any],
               points: dict[str, list[dict[str, Any]]] | None = None, prefix: str = "compare", **extra: Any) -> "Comparison":
        """Create the folder ``<out>/<prefix>-<UTC stamp>`` and its plan: one entry per
        (architecture, hyperparameter point, seed). Without ``points`` each architecture has one
        point, its defaults; ``extra`` keys go into the plan (a sweep's ``kind`` and ``grid``)."""
        folder = make_unique_dir(Path(out), f"{prefix}-{utc_stamp()}")
        runs = [{"arch": a, "seed": s, "hparams": p, "status": "pending", "run_dir": None, "attempts": 0, "error": None}
                for a in archs for p in (points[a] if points else [{}]) for s in seeds]
        plan = {**extra, "created": utc_iso(), "archs": archs, "seeds": seeds, "settings": settings, "runs": runs}
        comparison = cls(folder, plan)
        comparison.save()
        return comparison

    @classmethod
    def load(cls, folder: str) -> "Comparison":
        path = Path(folder) / PLAN
        try:
            plan = json.loads(path.read_text(encoding="utf-8"))
            plan["runs"], plan["settings"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path} is missing or damaged ({type(exc).__name__}); is {folder} a comparison folder?") from None
        return cls(Path(folder), plan)

    def save(self) -> None:
        write_json(self.folder / PLAN, self.plan)


def execute(
    settings: dict[str, Any],
    entry: dict[str, Any],
    folder: Path,
    evaluator: Any = None,
    on_start: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Run one planned (architecture, seed, hyperparameters) entry, or resume it from its checkpoint.

    The run folder is written exactly as ``bench run`` writes it, inside ``folder``.
    ``on_start(run_dir)`` is called once the folder exists, before training. Returns the
    outcome: ``status``, ``run_dir``, ``error``, ``stop_signal``, ``diverged_at_step``.
    A plugin error ends this run (status ``failed``) without raising.
    """
    from bench.registry import default_registry
    from bench.runner import CHECKPOINT, Run, RunConfig

    registry = default_registry()
    previous = Path(entry["run_dir"]) if entry.get("run_dir") else None
    run = None
    try:
        if previous is not None and (previous / CHECKPOINT).is_file():
            run = Run.resume(previous, registry.load, evaluator)
        else:
            hparams = {**settings.get("hparams", {}), **entry.get("hparams", {})}
            cfg = RunConfig(**{**settings, "arch": entry["arch"], "seed": entry["seed"], "out": str(folder), "hparams": hparams})
            run = Run(cfg, registry.load(entry["arch"]), evaluator)
            run.dir = make_run_dir(folder, entry["arch"], entry["seed"])
        if on_start is not None:
            on_start(run.dir)
        record = run.train()
    except PluginError as exc:
        console.error(str(exc))
        return failed_outcome(str(exc), str(run.dir) if run and run.dir else None)
    return {"status": record["status"], "run_dir": str(run.dir), "error": record.get("error"),
            "stop_signal": run.stop_signal, "diverged_at_step": record.get("diverged_at_step")}


def make_evaluator(settings: dict[str, Any]) -> Any:
    """One evaluator for a whole comparison (same device, same protocol), or None with --no-eval."""
    if not settings.get("eval", True):
        return None
    from bench.metrics import Evaluator
    from bench.runner import resolve_device

    return Evaluator(resolve_device(settings["device"]), n_samples=settings["eval_samples"],
                     data_dir=settings.get("data_dir"))


def adopt(entry: dict[str, Any], folder: Path) -> bool:
    """Settle an unfinished entry's old run folder before (re)starting it: keep it to resume,
    take its result (it finished, but the plan never heard: True), or remove it."""
    from bench.runner import CHECKPOINT

    run_dir = Path(entry["run_dir"]) if entry.get("run_dir") else None
    if run_dir is None or not run_dir.is_dir():
        entry["run_dir"] = None
        return False
    if (run_dir / CHECKPOINT).is_file():
        return False  # execute() resumes it
    try:
        status = str(read_record(run_dir).status)
    except BenchError:
        status = None
    if status in ("completed", "diverged"):
        entry["status"] = status
        return True
    discard(entry, folder)
    return False


def discard(entry: dict[str, Any], folder: Path) -> None:
    """Remove an entry's unfinished run folder that cannot be resumed (a new attempt starts afresh)."""
    run_dir = Path(entry["run_dir"]) if entry.get("run_dir") else None
    entry["run_dir"] = None
    if run_dir is None or not run_dir.is_dir():
        return
    if run_dir.resolve().parent == folder.resolve():  # never anything outside the plan's folder
        shutil.rmtree(run_dir, ignore_errors=True)


def failed_outcome(error: str, run_dir: str | None = None) -> dict[str, Any]:
    """What :func:`execute` returns for a run that failed before or outside its own record."""
    return {"status": "failed", "run_dir": run_dir, "error": error, "stop_signal": None, "diverged_at_step": None}


def check_plan(plan: dict[str, Any]) -> None:
    """Fail fast on settings, names or hyperparameters that cannot work, before hours of training."""
    from bench.registry import default_registry
    from bench.runner import RunConfig

    settings = plan["settings"]
    RunConfig(arch="-", **settings).validate()
    registry = default_registry()
    for arch in sorted({e["arch"] for e in plan["runs"]}):
        spec = registry.load(arch)
        for point in {json.dumps(e["hparams"], sort_keys=True) for e in plan["runs"] if e["arch"] == arch}:
            spec.make_config({**settings.get("hparams", {}), **json.loads(point)})


def run_comparison(comparison: Comparison) -> int:
    """Run every unfinished entry of ``comparison`` one after another; return the exit status."""
    check_plan(comparison.plan)
    settings = comparison.plan["settings"]
    entries = comparison.plan["runs"]
    evaluator = make_evaluator(settings)

    todo = [e for e in entries if e["status"] not in FINISHED and not adopt(e, comparison.folder)]
    comparison.save()
    console.err.print(f"comparison {comparison.folder}: {len(entries)} runs, {len(todo)} to go", soft_wrap=True)
    for index, entry in enumerate(todo, 1):
        console.err.rule(f"[{index}/{len(todo)}] {describe(entry)}  ({len(todo) - index} after this)")

        def started(run_dir: Path, entry: dict[str, Any] = entry) -> None:
            entry.update(status="running", run_dir=str(run_dir))
            comparison.save()

        outcome = execute(settings, entry, comparison.folder, evaluator, started)
        entry.update({k: v for k, v in outcome.items() if k in ("status", "run_dir", "error") and v is not None})
        comparison.save()
        if outcome["status"] == "interrupted":
            console.err.print(f"interrupted; continue with: python -m bench compare --resume {comparison.folder}")
            return 128 + (outcome["stop_signal"] or 2)
        if outcome["status"] == "diverged":
            console.warn(f"{describe(entry)} diverged at step {outcome['diverged_at_step']}; going on")
    return 1 if any(e["status"] == "failed" for e in entries) else 0


def command_line(plan: dict[str, Any]) -> str:
    """The ``bench compare`` command that makes ``plan``'s runs (non-default settings only)."""
    from bench.runner import RunConfig

    settings, default = plan["settings"], dataclasses.asdict(RunConfig(arch="-"))
    seeds = plan["seeds"]
    parts = ["python -m bench compare", f"--arch {','.join(plan['archs'])}",
             f"--seeds {len(seeds)}" if seeds == list(range(len(seeds))) else f"--seeds {','.join(map(str, seeds))}"]
    for key in ("epochs", "steps"):
        if settings.get(key) is not None:
            parts.append(f"--{key} {settings[key]}")
    if settings.get("time_budget") is not None:
        parts.append(f"--time-budget {_duration(settings['time_budget'])}")
    if settings.get("eval_every_s"):
        parts.append(f"--eval-every {_duration(settings['eval_every_s'])}")
    flags = {"eval_every": "--eval-every", "batch_size": "--batch-size", "device": "--device", "precision": "--precision",
             "threads": "--threads", "train_subset": "--train-subset", "eval_samples": "--eval-samples",
             "log_every": "--log-every", "sample_every": "--sample-every", "warmup_steps": "--warmup-steps",
             "checkpoint_every": "--checkpoint-every", "data_dir": "--data-dir"}
    for key, flag in flags.items():
        if settings.get(key, default[key]) != default[key]:
            parts.append(f"{flag} {settings[key]}")
    if not settings.get("eval", True):
        parts.append("--no-eval")
    parts += [f"--set {k}={v}" for k, v in sorted(settings.get("hparams", {}).items())]
    return " ".join(parts)


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def describe(entry: dict[str, Any]) -> str:
    """``arch seed N [k=v ...]`` for one planned run."""
    extra = " ".join(f"{k}={v}" for k, v in sorted(entry.get("hparams", {}).items()))
    return f"{entry['arch']} seed {entry['seed']}" + (f" {extra}" if extra else "")


def plan_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings a plan shares across its entries (everything but arch, seed and out),
    from ``bench compare`` or ``bench sweep`` options, validated."""
    from bench.cli import run_config

    if not args.arch:
        raise UsageError("--arch NAME[,NAME...] is required (see: python -m bench list)")
    cfg = run_config(args, "-")
    cfg.validate()
    settings = dataclasses.asdict(cfg)
    for key in ("arch", "seed", "out"):
        settings.pop(key)
    return settings


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.report.aggregate import group_runs, load_runs
    from bench.tables import print_comparison

    if args.resume:
        comparison = Comparison.load(args.resume)
    else:
        comparison = Comparison.create(args.out, args.arch, args.seeds, plan_settings(args))
    status = run_comparison(comparison)
    try:
        groups = group_runs(load_runs([comparison.folder]), args.fid_target)
    except BenchError as exc:
        console.warn(f"no comparison table: {exc}")
        return status
    print_comparison(groups)
    console.out.print(f"comparison: {comparison.folder}  (tensorboard --logdir {comparison.folder})")
    return status
