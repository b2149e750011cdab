"""``bench report``: compare finished runs under one protocol and publish the table."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from bench import console
from bench.report import terminal
from bench.cli.options import add_fid_target, parse_int
from bench.errors import UsageError
from bench.report.aggregate import protocol_note
from bench.report.figures import figure_files
from bench.report.publish import MOST_DIGITS, write_report
from bench.report.render import DEFAULT_LABEL, FORMATS, LATEX_COLUMNS
from bench.report.cells import COLUMN_KEYS, check_columns


def _own_command(args: argparse.Namespace) -> str | None:
    """This report's command line, for the report to say how it was made (None when not run as ``report``)."""
    argv = getattr(args, "argv", [])  # set by bench.cli.main
    return f"{console.program()} {shlex.join(argv)}" if list(argv[:1]) == ["report"] else None


def run(args: argparse.Namespace) -> int:
    """Write the table (and figures); show it in the terminal when it went to a file."""
    report = write_report(args.paths, args.format, args.out, args.fid_target, args.allow_mixed, args.figures,
                          strict=args.strict, command=_own_command(args), intro=args.intro,
                          by_hparams=args.by_hparams, best=args.best, columns=args.columns, digits=args.digits,
                          caption=args.caption, label=args.label)
    note = protocol_note(report.groups)
    if note:
        console.err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    if report.out is not None:
        terminal.print_comparison(report.groups, args.columns, args.digits)
        console.out.print(f"report: {report.out}", markup=False, soft_wrap=True)
        for path in report.companions:
            console.out.print(f"also: {path}", markup=False, soft_wrap=True)
        for path in report.figures:
            also = ", ".join(f.suffix for f in figure_files(path)[1:])
            console.out.print(f"figure: {path} ({also} beside it)", markup=False, soft_wrap=True)
    return 0


DESCRIPTION = ("Compare finished runs: one table per device and protocol, one row per architecture, seeds aggregated, "
               "and every pair of architectures tested on FID.")


def column_list(text: str) -> tuple[str, ...]:
    """Parse ``--columns``: comma-separated column keys, each one known."""
    try:
        return check_columns([key.strip() for key in text.split(",") if key.strip()])
    except UsageError as exc:  # the parser's own one-line error, exit 2
        raise argparse.ArgumentTypeError(str(exc)) from None


def digit_count(text: str) -> int:
    """Parse ``--digits``: significant digits, 1 to MOST_DIGITS."""
    digits = parse_int(text)
    if not 1 <= digits <= MOST_DIGITS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MOST_DIGITS}, got {text}")
    return digits


def intro_text(path: str) -> str:
    """Parse ``--intro-file``: the file's text, without its trailing newlines."""
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise argparse.ArgumentTypeError(f"cannot read {path}: {reason}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="run folders, or folders holding run folders (searched recursively)")
    p.add_argument("--format", choices=tuple(FORMATS),
                   help="output format (default: md with --out; without --out, tables sized for the terminal)")
    p.add_argument("--out", metavar="FILE",
                   help="write the table here, figures beside it (default: print it to stdout, no figures)")
    add_fid_target(p, "FID a run must fall below to count as reaching quality")
    mixing = p.add_mutually_exclusive_group()
    mixing.add_argument("--allow-mixed", action="store_true",
                        help="put runs of different protocols in one table per device (the table says so)")
    mixing.add_argument("--strict", action="store_true", help="refuse runs of more than one protocol")
    p.add_argument("--no-figures", dest="figures", action="store_false", help="write no figures")
    intro = p.add_mutually_exclusive_group()
    intro.add_argument("--intro", metavar="TEXT",
                       help="a paragraph for the top of a Markdown report (what was run, and why)")
    intro.add_argument("--intro-file", dest="intro", type=intro_text, metavar="FILE",
                       help="Markdown for the top of a Markdown report, read from FILE (UTF-8), so the report's "
                            "own command stays short")
    p.add_argument("--by-hparams", action=argparse.BooleanOptionalAction, default=None,
                   help="one row per architecture and hyperparameter point (default: on for a sweep folder)")
    p.add_argument("--best", action="store_true",
                   help="keep only the hyperparameter point with the lowest mean FID over seeds, per architecture")
    p.add_argument("--columns", type=column_list, metavar="COL,COL,...",
                   help=f"the columns of the Markdown, LaTeX and terminal tables, in this order, from: "
                        f"{', '.join(COLUMN_KEYS)} (default: all but the other intervals; LaTeX: "
                        f"{','.join(LATEX_COLUMNS)}); CSV and JSON always hold everything")
    p.add_argument("--digits", type=digit_count, metavar="N",
                   help="significant digits of the numbers in those tables, trailing zeros kept so columns line up "
                        "(default: up to 4; a ± spread and a p-value have 2, and a mean ± spread and its interval stop "
                        "at the coarser place of the two, so neither looks more precise than the other)")
    p.add_argument("--caption", metavar="TEXT",
                   help="the LaTeX table's caption (default: the device and protocol, which then go under the table)")
    p.add_argument("--label", metavar="NAME", help=f"the LaTeX table's label (default {DEFAULT_LABEL}; "
                                                   "-1, -2... with several tables; the pairwise tests' adds -pairs)")
