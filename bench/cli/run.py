"""``bench run``: train one architecture, or continue an interrupted run."""

from __future__ import annotations

import argparse

from bench import console, tables
from bench.cli.options import add_training_options, refuse_with_resume, run_config
from bench.errors import UsageError
from bench.layout import Status
from bench.record import read_record
from bench.registry import default_registry
from bench.training.runner import Runner

DESCRIPTION = "Train one architecture on MNIST."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", help="architecture name (see: python -m bench list)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run to its original budget")
    add_training_options(p)


def run(args: argparse.Namespace) -> int:
    registry = default_registry()
    if args.resume:
        refuse_with_resume(args, "run", arch=bool(args.arch))
        if read_record(args.resume).status is Status.COMPLETED:
            console.out.print(f"{args.resume} is already complete; nothing to do")
            return 0
        runner = Runner.resume(args.resume, registry.load, stop=args.stop)
    elif not args.arch:
        raise UsageError("--arch NAME is required (see: python -m bench list)")
    else:
        runner = Runner(run_config(args, args.arch), registry.load(args.arch), stop=args.stop)
    record = runner.train()
    tables.print_run(record, runner.run.dir)
    if runner.run.stop_signal is not None:
        console.err.print(f"interrupted; continue with: python -m bench run --resume {runner.run.dir}")
        return 128 + runner.run.stop_signal
    return 0
