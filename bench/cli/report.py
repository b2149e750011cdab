"""``bench report``: compare finished runs under one protocol and publish the table."""

from __future__ import annotations

import argparse
import shlex

from bench import console, tables
from bench.cli.options import add_fid_target
from bench.report.aggregate import protocol_note
from bench.report.figures import figure_files
from bench.report.publish import write_report
from bench.report.render import FORMATS


def _own_command(args: argparse.Namespace) -> str | None:
    """This report's command line, for the report to say how it was made (None when not run as ``report``)."""
    argv = getattr(args, "argv", [])  # set by bench.cli.main
    return "python -m bench " + shlex.join(argv) if list(argv[:1]) == ["report"] else None


def run(args: argparse.Namespace) -> int:
    """Write the table (and figures); show it in the terminal when it went to a file."""
    report = write_report(args.paths, args.format, args.out, args.fid_target, args.allow_mixed, args.figures,
                          strict=args.strict, command=_own_command(args), intro=args.intro,
                          by_hparams=args.by_hparams, best=args.best)
    note = protocol_note(report.groups)
    if note:
        console.err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    if report.out is not None:
        tables.print_comparison(report.groups)
        console.out.print(f"report: {report.out}", markup=False, soft_wrap=True)
        for path in report.figures:
            also = ", ".join(f.suffix for f in figure_files(path)[1:])
            console.out.print(f"figure: {path} ({also} beside it)", markup=False, soft_wrap=True)
    return 0


DESCRIPTION = "Compare finished runs: one table per device and protocol, one row per architecture, seeds aggregated."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="run folders, or folders holding run folders (searched recursively)")
    p.add_argument("--format", choices=tuple(FORMATS), default="md", help="output format (default md)")
    p.add_argument("--out", metavar="FILE",
                   help="write the table here, figures beside it (default: print the table to stdout, no figures)")
    add_fid_target(p, "FID a run must fall below to count as reaching quality")
    mixing = p.add_mutually_exclusive_group()
    mixing.add_argument("--allow-mixed", action="store_true",
                        help="put runs of different protocols in one table per device (the table says so)")
    mixing.add_argument("--strict", action="store_true", help="refuse runs of more than one protocol")
    p.add_argument("--no-figures", dest="figures", action="store_false", help="write no figures")
    p.add_argument("--intro", metavar="TEXT",
                   help="a paragraph for the top of a Markdown report (what was run, and why)")
    p.add_argument("--by-hparams", action=argparse.BooleanOptionalAction, default=None,
                   help="one row per architecture and hyperparameter point (default: on for a sweep folder)")
    p.add_argument("--best", action="store_true",
                   help="keep only the hyperparameter point with the lowest mean FID over seeds, per architecture")
