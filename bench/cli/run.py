"""``bench run``: train one architecture, or continue an interrupted run."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import console, tables
from bench.cli.options import (
    add_parallel_options, add_resume_options, add_training_options, check_parallel_options, check_resume_options,
    parse_seeds, plan_settings, refuse_with_resume, run_config,
)
from bench.errors import UsageError
from bench.layout import PLAN, Status
from bench.plans.comparison import run_comparison
from bench.plans.execute import check_new_comparison, load_plan
from bench.plans.plan import Plan, PlanKind
from bench.record import read_record
from bench.registry import default_registry
from bench.storage import check_folder
from bench.report.publish import print_plan_results
from bench.training.runner import Runner

DESCRIPTION = "Train one architecture on MNIST."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", help=f"architecture name (see: {console.program()} list)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run to its original budget (a seed of a stack resumes its stack; a "
                        "comparison folder resumes the comparison)")
    add_resume_options(p, "comparison", plan=False)
    p.add_argument("--seeds", type=parse_seeds, metavar="N|LIST",
                   help="several seeds as one comparison of this architecture (a count, 3 = seeds 0,1,2, or a list "
                        f"0,5,7), --jobs at once; continue it with: {console.program()} compare --resume DIR")
    add_parallel_options(p)
    add_training_options(p)


def run(args: argparse.Namespace) -> int:
    if args.seeds is not None:
        return _seeds(args)
    given = [flag for flag, value in (("--jobs", args.jobs is not None), ("--stack", args.stack is not None),
                                      ("--stack-size", args.stack_size is not None)) if value]
    if given:
        raise UsageError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --seeds (several runs at once)")
    registry = default_registry()
    check_resume_options(args, "RUN_DIR")
    if args.resume:
        refuse_with_resume(args, "run", arch=bool(args.arch))
        if (Path(args.resume) / PLAN).is_file():  # a comparison folder, e.g. of `run --seeds`: its every run
            args.written = Path(args.resume)  # what bench.api loads and returns
            status = run_comparison(load_plan(args.resume), None, args.stop, timing_rounds=0,
                                    skip_damaged=args.skip_damaged)
            print_plan_results(Path(args.resume))
            return status
        check_folder(args.resume)  # before run.json is read: it may be a link to a file elsewhere
        if read_record(args.resume).status is Status.COMPLETED:
            console.out.print(f"{args.resume} is already complete; nothing to do")
            return 0
        runner = Runner.resume(args.resume, registry.load, stop=args.stop, entry_of=registry.entry,
                               skip_damaged=args.skip_damaged)
    elif not args.arch:
        raise UsageError(f"--arch NAME is required (see: {console.program()} list)")
    else:
        runner = Runner(run_config(args, args.arch), registry.load(args.arch), stop=args.stop,
                        entry=registry.entry(args.arch))
    runner.train()
    args.written = runner.run.dir  # the folder is made when training starts; what bench.api loads and returns
    for run, record in zip(runner.runs, runner.records, strict=True):  # a resumed stack: each of its seeds
        tables.print_run(record, run.dir)
    if runner.run.stop_signal is not None:
        console.err.print(f"interrupted; continue with: {console.program()} run --resume {runner.run.dir}")
        return 128 + runner.run.stop_signal
    return 0


def _seeds(args: argparse.Namespace) -> int:
    """``--seeds``: ``compare`` of one architecture (the same checks, plan, driver and table), --jobs at once."""
    given = [flag for flag, value in (("--resume", args.resume), ("--seed", args.seed)) if value]
    if given:
        raise UsageError(f"--seeds and {', '.join(given)} given together; --seeds makes a comparison folder, "
                         f"which {console.program()} compare --resume continues")
    check_parallel_options(args)
    if not args.arch:
        raise UsageError(f"--arch NAME is required (see: {console.program()} list)")
    args.arch = [args.arch]
    settings = check_new_comparison(plan_settings(args), args.arch, args.seeds)
    plan = Plan.create(args.out, PlanKind.COMPARE, args.arch, args.seeds, settings, command=args.argv)
    args.written = plan.folder
    status = run_comparison(plan, args.jobs, args.stop, timing_rounds=0)
    print_plan_results(plan.folder)
    return status
