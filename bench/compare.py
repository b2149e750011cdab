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
from pathlib import Path
from typing import Any

from bench import console
from bench.errors import BenchError, PluginError, UsageError
from bench.results import make_run_dir, make_unique_dir, utc_iso, utc_stamp, write_json

PLAN = "compare.json"


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
    def create(cls, out: str, archs: list[str], seeds: list[int], settings: dict[str, Any]) -> "Comparison":
        folder = make_unique_dir(Path(out), f"compare-{utc_stamp()}")
        runs = [{"arch": a, "seed": s, "status": "pending", "run_dir": None} for a in archs for s in seeds]
        comparison = cls(folder, {"created": utc_iso(), "archs": archs, "seeds": seeds, "settings": settings, "runs": runs})
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


def _run_config(settings: dict[str, Any], arch: str, seed: int, out: Path):
    from bench.runner import RunConfig

    return RunConfig(**{**settings, "arch": arch, "seed": seed, "out": str(out)})


def run_comparison(comparison: Comparison) -> int:
    """Run every pending or interrupted run of ``comparison``; return the exit status."""
    from bench.registry import default_registry
    from bench.runner import Run, RunConfig

    registry = default_registry()
    settings = comparison.plan["settings"]
    entries = comparison.plan["runs"]
    # Fail fast on settings or names that cannot work, before hours of training.
    RunConfig(arch="-", **settings).validate()
    for arch in comparison.plan["archs"]:
        registry.entry(arch)

    evaluator = None
    if settings.get("eval", True):
        from bench.metrics import Evaluator
        from bench.runner import resolve_device

        evaluator = Evaluator(resolve_device(settings["device"]), n_samples=settings["eval_samples"],
                              data_dir=settings.get("data_dir"))

    todo = [e for e in entries if e["status"] not in ("completed", "diverged", "failed")]
    console.err.print(f"comparison {comparison.folder}: {len(entries)} runs, {len(todo)} to go", soft_wrap=True)
    for index, entry in enumerate(todo, 1):
        left = len(todo) - index
        console.err.rule(f"[{index}/{len(todo)}] {entry['arch']} seed {entry['seed']}  ({left} after this)")
        try:
            if entry["run_dir"] and (Path(entry["run_dir"]) / "checkpoint.pt").is_file():
                run = Run.resume(entry["run_dir"], registry.load, evaluator)
            else:
                cfg = _run_config(settings, entry["arch"], entry["seed"], comparison.folder)
                run = Run(cfg, registry.load(entry["arch"]), evaluator)
            if run.dir is None:
                run.dir = make_run_dir(comparison.folder, entry["arch"], entry["seed"])
            entry.update(status="running", run_dir=str(run.dir))
            comparison.save()
            record = run.train()
        except PluginError as exc:
            console.error(str(exc))
            entry.update(status="failed", error=str(exc))
            comparison.save()
            continue
        entry["status"] = record["status"]
        comparison.save()
        if record["status"] == "interrupted":
            console.err.print(f"interrupted; continue with: python -m bench compare --resume {comparison.folder}")
            return 128 + (run.stop_signal or 2)
        if record["status"] == "diverged":
            console.warn(f"{entry['arch']} seed {entry['seed']} diverged at step {record['diverged_at_step']}; going on")
    return 1 if any(e["status"] == "failed" for e in entries) else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.cli import run_config
    from bench.report import group_runs, load_runs
    from bench.tables import print_comparison

    if args.resume:
        comparison = Comparison.load(args.resume)
    else:
        if not args.arch:
            raise UsageError("--arch NAME[,NAME...] is required (see: python -m bench list)")
        settings = dataclasses.asdict(run_config(args, "-"))
        for key in ("arch", "seed", "out"):
            settings.pop(key)
        comparison = Comparison.create(args.out, args.arch, args.seeds, settings)
    status = run_comparison(comparison)
    try:
        groups = group_runs(load_runs([comparison.folder]), args.fid_target)
    except BenchError as exc:
        console.warn(f"no comparison table: {exc}")
        return status
    print_comparison(groups)
    console.out.print(f"comparison: {comparison.folder}  (tensorboard --logdir {comparison.folder})")
    return status
