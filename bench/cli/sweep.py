"""``bench sweep``: every (architecture, seed, hyperparameter point), here or on a Ray cluster."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from bench import console
from bench.report import cells
from bench.cli.options import (
    Parser, add_backend_options, add_plan_options, add_resume_options, add_training_options, check_resume_options,
    parse_int, plan_settings, ray_backend, refuse_with_resume,
)
from bench.errors import UsageError
from bench.layout import Status
from bench.plans import parallelism  # noqa: F401  (imported now: it reads this process's start-up)
from bench.plans.backends import local_backend
from bench.plans.driver import Backend, Driver
from bench.plans.execute import common_scale, load_plan
from bench.plans.grid import grid_points, make_grid, split_values
from bench.plans.plan import Plan, PlanKind
from bench.registry import default_registry
from bench.report.aggregate import best_per_arch
from bench.report.publish import print_plan_results

DESCRIPTION = ("Run every (architecture, seed, hyperparameter point) through the same runner: one after another "
               "here (--backend local), or as one Ray task each (--backend ray), then print the table with one row "
               "per architecture and point.")


def parse_grid_option(text: str) -> tuple[str, list[str]]:
    """``KEY=V1,V2,...`` into ``(key, [values])`` (argparse type of ``--grid``)."""
    key, sep, rest = text.partition("=")
    values = split_values(rest)
    if not sep or not key.strip() or not all(values):
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE[,VALUE...], e.g. lr=1e-4,2e-4")
    return key.strip(), values


def add_arguments(p: Parser) -> None:
    add_plan_options(p, "vanilla,wgan,wgan-gp")
    p.add_argument("--grid", action="append", type=parse_grid_option, default=[], metavar="KEY=V1,V2",
                   help="values of one hyperparameter, e.g. --grid lr=1e-4,2e-4 (repeatable; the points are "
                        "the cartesian product)")
    p.add_argument("--grid-file", metavar="FILE",
                   help="a TOML file: [grid] with key = [values], and [grid.ARCH] tables for one architecture")
    add_backend_options(p, "one Ray task per run")
    p.add_argument("--retries", type=parse_int, default=1, metavar="N",
                   help="run a failed run again up to N times before recording it as failed (default 1)")
    p.add_argument("--resume", metavar="SWEEP_DIR",
                   help="continue a sweep: skip finished points, resume interrupted runs from their checkpoints")
    add_resume_options(p, "sweep")
    add_training_options(p, seed=False)


def plan_points(args: argparse.Namespace) -> dict[str, Any]:
    """Validate the options and expand the grid: the arguments of :meth:`Plan.create`."""
    settings = common_scale(plan_settings(args), args.arch)
    registry = default_registry()
    for arch in args.arch:
        registry.entry(arch)
    grid = make_grid(args.grid, args.grid_file)
    for name in grid.per_arch:
        registry.entry(name)  # a typo in a [grid.NAME] table fails like a typo in --arch
    points = {arch: grid_points(arch, registry.load(arch), grid, settings.hparams) for arch in args.arch}
    if settings.batch_size is not None and any("batch_size" in p for ps in points.values() for p in ps):
        raise UsageError("--batch-size and a batch_size grid given together; keep one")
    return {"out": args.out, "kind": PlanKind.SWEEP, "archs": args.arch, "seeds": args.seeds, "settings": settings,
            "points": points, "grid": dataclasses.asdict(grid), "command": args.argv}


def _resumed(args: argparse.Namespace) -> Plan:
    refuse_with_resume(args, "sweep", arch=bool(args.arch), seeds=args.seeds != [0], grid=bool(args.grid),
                       stack=args.stack is not None, stack_size=args.stack_size is not None,
                       grid_file=bool(args.grid_file))
    return load_plan(args.resume)


def run(args: argparse.Namespace) -> int:
    ray = ray_backend(args)  # first: without Ray, say so before anything is written
    if args.retries < 0:
        raise UsageError(f"--retries must be 0 or more, got {args.retries}")
    check_resume_options(args, "SWEEP_DIR")
    if args.resume:
        plan: Plan | None = _resumed(args)
        settings = plan.settings
        runs = sum(not e.status.finished or (args.retry_failed and e.status is Status.FAILED) for e in plan.runs)
    else:
        planned = plan_points(args)
        settings, runs = planned["settings"], len(args.seeds) * sum(map(len, planned["points"].values()))
        plan = None
    backend: Backend = ray or local_backend(settings, args.jobs, runs, args.arch or (plan.archs if plan else None))
    backend.check(settings)
    backend.start()  # Ray is up, or the cluster joined, before the sweep folder is made
    try:
        if plan is None:
            plan = Plan.create(**planned)
        status = Driver(plan, backend, args.retries, args.stop, retry_failed=args.retry_failed,
                        skip_damaged=args.skip_damaged).run()
    finally:
        backend.stop()
    _print_results(plan, args.fid_target)
    return status


def _print_results(plan: Plan, fid_target: float | None) -> None:
    """The table with one row per point, and the best point of every architecture."""
    groups = print_plan_results(plan.folder, fid_target, by_hparams=True)
    for group, best in zip(groups, best_per_arch(groups), strict=True):
        for row in best.rows:
            fid = row.metrics["fid"]
            if fid.mean is not None and sum(r.arch == row.arch for r in group.rows) > 1:
                console.out.print(f"best {row.arch}: {cells.hparams_text(group, row)}  FID {console.fmt(fid.mean)} "
                                  f"(mean over {fid.n} seed(s))", markup=False, highlight=False, soft_wrap=True)
    console.out.print(f"sweep: {plan.folder}  ({console.program()} report {plan.folder} --best)",
                      markup=False, highlight=False, soft_wrap=True)
