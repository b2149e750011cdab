"""``bench compare``: several architectures and seeds, one protocol, one machine."""

from __future__ import annotations

import argparse

from bench import console, tables
from bench.cli.options import add_plan_options, add_training_options, plan_settings, refuse_with_resume
from bench.errors import BenchError
from bench.plans.backends import LocalBackend
from bench.plans.driver import Driver
from bench.plans.execute import check_plan
from bench.plans.plan import Plan, PlanEntry, PlanKind
from bench.report.aggregate import group_runs, load_runs

DESCRIPTION = ("Run every (architecture, seed) pair through the same runner, one after another, under one budget, "
               "then print the comparison table.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_plan_options(p, "vanilla,dcgan,wgan")
    p.add_argument("--resume", metavar="COMPARE_DIR",
                   help="continue a comparison: skip finished runs, resume the interrupted one")
    add_training_options(p, seed=False)


def run(args: argparse.Namespace) -> int:
    if args.resume:
        refuse_with_resume(args, "comparison", arch=bool(args.arch), seeds=args.seeds != [0])
        plan = Plan.load(args.resume)
        check_plan(plan.settings, plan.runs)
    else:
        settings = plan_settings(args)
        check_plan(settings, [PlanEntry(arch=a, seed=s) for a in args.arch for s in args.seeds])
        plan = Plan.create(args.out, PlanKind.COMPARE, args.arch, args.seeds, settings, command=args.argv)
    status = Driver(plan, LocalBackend(), retries=0, stop=args.stop).run()
    try:
        groups = group_runs(load_runs([plan.folder]), args.fid_target)
    except BenchError as exc:
        console.warn(f"no comparison table: {exc}")
        return status
    tables.print_comparison(groups)
    console.out.print(f"comparison: {plan.folder}  (tensorboard --logdir {plan.folder})")
    return status
