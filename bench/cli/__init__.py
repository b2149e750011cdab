"""``python -m bench``: the command line. Errors are caught here, once, and printed as one line.

Each command is a module of this package with ``add_arguments(parser)`` and ``run(args)``.
The table below names them; only the command that runs is imported (pip's layout), so
``bench list`` imports neither Ray nor matplotlib, and commands never import each other.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from types import ModuleType

from bench import __version__, console
from bench.cli.options import Parser
from bench.errors import BenchError
from bench.stop import StopRequest

#: name -> (module, one-line summary), in the order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("bench.cli.run", "train one architecture"),
    "eval": ("bench.cli.eval", "recompute a run's metrics from its generator.pt"),
    "score": ("bench.cli.score", "the suite's metrics for any generator's images (.npy, .npz, .pt, PNGs)"),
    "compare": ("bench.cli.compare", "run several architectures and seeds under one protocol"),
    "classifier": ("bench.cli.classifier", "train or check the MNIST classifier behind the metrics"),
    "report": ("bench.cli.report", "compare finished runs and publish the table"),
    "perf": ("bench.cli.perf", "time the runner against the study's loop, side by side"),
    "sweep": ("bench.cli.sweep", "every architecture x seed x hyperparameter point, here or on Ray"),
    "list": ("bench.cli.listing", "show the registered architectures"),
}


def command_module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name][0])


def build_parser(command: str | None = None, parser_class: type[argparse.ArgumentParser] = Parser
                 ) -> argparse.ArgumentParser:
    """The parser of every command, or, given ``command``, of that one (the others listed by name only, as they
    are for a ``command`` that names none of them). ``parser_class`` decides what a usage error does (the
    command line prints it and exits 2; :mod:`bench.api` raises it)."""
    parser = parser_class(prog=console.program(), description="Compare GAN architectures on MNIST, fairly and fast.")
    parser.add_argument("--version", action="version", version=f"gan-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=parser_class)
    sub.required = True
    for name, (_, summary) in COMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name, help=summary)
            continue
        module = command_module(name)
        p = sub.add_parser(name, help=summary, description=getattr(module, "DESCRIPTION", summary))
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def _chosen(argv: Sequence[str]) -> str | None:
    """The command named on the command line (the first word that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def _crash_log(exc: BaseException) -> str:
    fd, path = tempfile.mkstemp(prefix="gan-bench-crash-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"argv: {sys.argv}\n")
        traceback.print_exception(exc, file=fh)
    return path


def main(argv: Sequence[str] | None = None, stop: StopRequest | None = None) -> int:
    """Run the command line; return the exit status.

    Args:
        stop: the stop request the command honours (tests inject one; signals set it otherwise).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        chosen = _chosen(argv)
        # Building the chosen command's parser imports its library (torch among it); none is built for
        # --version, --help or a word that is no command.
        args = build_parser(chosen or "").parse_args(argv)
        args.argv = argv
        args.stop = stop or StopRequest()
        with console.carrying_out(argv):
            return int(args.func(args) or 0)
    except BenchError as exc:
        if exc.__cause__ is not None:  # a plugin's own error: keep its traceback for its author
            console.error(f"{exc} (traceback in {_crash_log(exc)})")
        else:
            console.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        console.error("interrupted")
        return 130
    except BrokenPipeError:  # text written straight to stdout (a report) whose reader has gone: it had all it read
        console.reader_gone()
        return 0
    except Exception as exc:  # the last line of defence: short message, traceback in a file
        path = _crash_log(exc)
        console.error(f"internal error: {type(exc).__name__}: {exc} (traceback in {path})")
        return 1
