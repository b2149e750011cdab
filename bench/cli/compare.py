"""``bench compare``: several architectures and seeds, one protocol, one machine."""

from __future__ import annotations

import argparse

from bench.cli.options import (
    add_backend_options, add_plan_options, add_resume_options, add_training_options, check_resume_options, parse_int,
    plan_settings, ray_backend, refuse_with_resume,
)
from bench.errors import UsageError
from bench.plans.sidebyside import ROUNDS
from bench.plans.comparison import run_comparison
from bench.plans.execute import check_new_comparison, load_plan
from bench.plans.plan import Plan, PlanKind
from bench.report.publish import print_plan_results

DESCRIPTION = ("Time every architecture's training step side by side, then run every (architecture, seed) pair "
               "through the same runner under one budget, several at once where that is faster, and print the "
               "comparison table.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_plan_options(p, "vanilla,dcgan,wgan")
    p.add_argument("--resume", metavar="COMPARE_DIR",
                   help="continue a comparison: skip finished runs, resume the interrupted ones")
    add_resume_options(p, "comparison")
    add_backend_options(p, "one Ray task per run, on this machine or a cluster (the step timing stays here)")
    p.add_argument("--timing-rounds", type=parse_int, default=ROUNDS, metavar="N",
                   help=f"rounds of the side-by-side step timing before the runs (default {ROUNDS}; 0: none)")
    add_training_options(p, seed=False)


def run(args: argparse.Namespace) -> int:
    ray = ray_backend(args)  # first: without Ray, say so before anything is written
    check_resume_options(args, "COMPARE_DIR")
    if args.timing_rounds < 0:
        raise UsageError(f"--timing-rounds must be 0 or more, got {args.timing_rounds}")
    if args.resume:
        refuse_with_resume(args, "comparison", arch=bool(args.arch), seeds=args.seeds != [0],
                           stack=args.stack is not None, stack_size=args.stack_size is not None)
        plan = load_plan(args.resume)
        settings = plan.settings
    else:
        settings = check_new_comparison(plan_settings(args), args.arch, args.seeds)
    if ray is not None:
        ray.check(settings)
        ray.start()  # Ray is up, or the cluster joined, before the comparison folder is made
    try:
        if not args.resume:
            plan = Plan.create(args.out, PlanKind.COMPARE, args.arch, args.seeds, settings, command=args.argv)
        args.written = plan.folder  # what bench.api loads and returns
        status = run_comparison(plan, args.jobs, args.stop, args.timing_rounds, backend=ray,
                                retry_failed=args.retry_failed, skip_damaged=args.skip_damaged)
    finally:
        if ray is not None:
            ray.stop()
    print_plan_results(plan.folder, args.fid_target)
    return status
