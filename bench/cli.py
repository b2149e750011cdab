"""``python -m bench``: the command line. Errors are caught here, once, and printed as one line."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import traceback
from typing import NoReturn, Sequence

from bench import console
from bench.errors import BenchError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        console.error(f"{message} (see: {self.prog} --help)")
        raise SystemExit(2)


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def parse_duration(text: str) -> float:
    """Parse ``90s``, ``10m``, ``1h``, ``1h30m`` or plain seconds into seconds."""
    m = _DURATION.fullmatch(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise argparse.ArgumentTypeError(f"invalid time budget {text!r}; use e.g. 90s, 10m, 1h or 1h30m")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def parse_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The options every training command shares (run, and later compare and sweep)."""
    budget = p.add_argument_group("budget (exactly one; default --epochs 5)")
    budget.add_argument("--epochs", type=parse_int, help="passes over the training set")
    budget.add_argument("--steps", type=parse_int, help="training batches")
    budget.add_argument("--time-budget", type=parse_duration, metavar="DURATION",
                        help="wall-clock training time, e.g. 90s, 10m, 1h; stops at the first batch boundary after it")
    p.add_argument("--batch-size", type=parse_int, help="default: the architecture's (64 for the study's)")
    p.add_argument("--seed", type=parse_int, default=0, help="training seed; the same seed gives the same run on CPU (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--out", default="results/runs", help="folder for run folders (default results/runs)")
    p.add_argument("--sample-every", type=parse_int, default=400, metavar="N", help="log a sample grid every N batches (default 400, 0 = only at the end)")
    p.add_argument("--log-every", type=parse_int, default=50, metavar="N", help="pull losses to the host every N batches (default 50)")
    p.add_argument("--warmup-steps", type=parse_int, default=10, metavar="N", help="batches left out of the timing statistics (default 10)")
    p.add_argument("--train-subset", type=parse_int, metavar="N", help="train on the first N images of a fixed shuffle")
    p.add_argument("--data-dir", help="a folder with the four MNIST IDX files (default: the copy shipped in the package)")
    p.add_argument("--set", dest="hparams", action="append", type=parse_assignment, default=[], metavar="KEY=VALUE",
                   help="override an architecture hyperparameter, e.g. --set lr=1e-4 (repeatable)")


def run_config(args: argparse.Namespace, arch: str):
    """Build a RunConfig from parsed training options."""
    from bench.runner import RunConfig

    return RunConfig(
        arch=arch, epochs=args.epochs, steps=args.steps, time_budget=args.time_budget,
        batch_size=args.batch_size, seed=args.seed, device=args.device, out=args.out,
        sample_every=args.sample_every, log_every=args.log_every, warmup_steps=args.warmup_steps,
        train_subset=args.train_subset, data_dir=args.data_dir, hparams=dict(args.hparams),
    )


def cmd_run(args: argparse.Namespace) -> int:
    from bench.registry import default_registry
    from bench.runner import Run
    from bench.tables import print_run

    spec = default_registry().load(args.arch)
    run = Run(run_config(args, args.arch), spec)
    record = run.train()
    print_run(record, run.dir)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from bench.registry import default_registry
    from bench.tables import print_architectures

    print_architectures(default_registry().load_all())
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="python -m bench", description="Compare GAN architectures on MNIST, fairly and fast.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("run", help="train one architecture", description="Train one architecture on MNIST.")
    p.add_argument("--arch", required=True, help="architecture name (see: python -m bench list)")
    add_training_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("list", help="show the registered architectures")
    p.set_defaults(func=cmd_list)
    return parser


def _crash_log(exc: BaseException) -> str:
    fd, path = tempfile.mkstemp(prefix="gan-bench-crash-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"argv: {sys.argv}\n")
        traceback.print_exception(exc, file=fh)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        console.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        console.error("interrupted")
        return 130
    except Exception as exc:  # the last line of defence: short message, traceback in a file
        path = _crash_log(exc)
        console.error(f"internal error: {type(exc).__name__}: {exc} (traceback in {path})")
        return 1

