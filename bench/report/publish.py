"""A report's files: load and group the runs, render the table, write it and its figures atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path

from bench import console
from bench.report import terminal
from bench.errors import BenchError, UsageError
from bench.layout import PLAN
from bench.plans.plan import Plan, PlanKind
from bench.report.aggregate import Group, best_per_arch, group_runs, is_finite, load_runs
from bench.report.figures import figure_files, figure_paths, write_figures
from bench.report.render import output_format, render
from bench.storage import refuse_link, write_text
from bench.report.cells import check_columns


@dataclass
class Report:
    """What ``write_report`` produced."""

    groups: list[Group]
    out: Path | None
    figures: list[Path]
    #: Files the format writes beside the table (CSV: ``<stem>-pairs.csv``, the pairwise tests).
    companions: list[Path] = field(default_factory=list)


def is_sweep(path: Path) -> bool:
    """Whether ``path`` is a sweep folder (``bench sweep``'s plan), whose rows are hyperparameter points."""
    if not (path.is_dir() and (path / PLAN).is_file()):
        return False
    try:
        return Plan.load(path).kind is PlanKind.SWEEP
    except UsageError:
        return False  # a damaged plan: its runs are still reported, one row per architecture


def _check_out(out: Path, suffix: str) -> None:
    if out.is_dir() and not out.is_symlink():
        raise UsageError(f"--out {out} is a folder; give a file name, e.g. {out / ('report.' + suffix)}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create {out.parent} ({exc.strerror or exc})") from None


def write_report(
    paths: Sequence[str | os.PathLike],
    fmt: str | None = None,
    out: str | os.PathLike | None = None,
    fid_target: float | None = None,
    allow_mixed: bool = False,
    figures: bool = True,
    *,
    strict: bool = False,
    command: str | None = None,
    intro: str | None = None,
    by_hparams: bool | None = None,
    best: bool = False,
    columns: Sequence[str] | None = None,
    digits: int | None = None,
    caption: str | None = None,
    label: str | None = None,
) -> Report:
    """Load, group and render the runs in ``paths``; write the table atomically to ``out`` (stdout if None).

    ``fmt`` None is Markdown in a file, and on stdout the terminal's tables
    (:func:`bench.report.terminal.print_comparison`), sized to its width; a format named is printed verbatim,
    for a parser to read.

    Figures are written beside ``out`` when ``figures`` is on and ``out`` is given, and so are the
    format's companion files. ``by_hparams`` gives each hyperparameter point its own row (None:
    only when a path is a sweep folder); ``best`` keeps the point with the lowest mean FID per
    architecture. ``columns``, ``digits``, ``caption`` and ``label`` shape the Markdown and LaTeX tables.
    ``fid_target`` None gives each table its evaluation scale's default target.
    """
    fmt_name = fmt or "md"
    form = output_format(fmt_name)
    style = {"columns": None if columns is None else check_columns(columns), "digits": _digits(digits),
             "caption": caption, "label": label}
    by_hparams = _check_options(paths, fid_target, by_hparams, best)
    groups = group_runs(load_runs(paths), fid_target, allow_mixed=allow_mixed, require_single_protocol=strict,
                        by_hparams=by_hparams)
    if best:
        groups = best_per_arch(groups)
    if out is None:
        _print(groups, fmt, style)
        return Report(groups, None, [])
    out = Path(out)
    _check_out(out, form.suffix)
    companions = [out.parent / f"{out.stem}-{name}.{form.suffix}" for name in form.companions]
    figure_files_ = [f for png in figure_paths(out).values() for f in figure_files(png)] if figures else []
    for path in [out, *companions, *figure_files_]:  # every file this writes, before the first is written
        refuse_link(path)
    drawn = write_figures(groups, out) if figures else []
    write_text(out, render(groups, fmt_name, [p.name for p in drawn], command, intro, **style))
    for path, make in zip(companions, form.companions.values(), strict=True):
        write_text(path, make(groups))
    return Report(groups, out, drawn, companions)


def _check_options(paths: Sequence[str | os.PathLike], fid_target: float | None, by_hparams: bool | None,
                   best: bool) -> bool:
    """Refuse a target that is not a positive number, or ``best`` without points; return whether each
    hyperparameter point gets its own row."""
    if fid_target is not None and not (is_finite(fid_target) and fid_target > 0):
        raise UsageError(f"--fid-target must be a positive number, got {fid_target}")
    if by_hparams is None:
        return best or any(is_sweep(Path(p)) for p in paths)
    if best and not by_hparams:
        raise UsageError("--best picks one hyperparameter point per architecture; drop --no-by-hparams")
    return by_hparams


def _print(groups: list[Group], fmt: str | None, style: dict) -> None:
    """The terminal's tables (``fmt`` None), or the format verbatim: the text may be piped into a parser."""
    if fmt is None:
        terminal.print_comparison(groups, style["columns"], style["digits"])
        return
    console.out.file.write(render(groups, fmt, **style))
    console.out.file.flush()


#: The most significant digits ``--digits`` accepts (a float holds about 15).
MOST_DIGITS = 15


def _digits(digits: int | None) -> int | None:
    if digits is not None and not 1 <= digits <= MOST_DIGITS:
        raise UsageError(f"--digits must be between 1 and {MOST_DIGITS}, got {digits}")
    return digits


def print_plan_results(folder: Path, fid_target: float | None = None, by_hparams: bool = False) -> list[Group]:
    """Print the table of a plan's runs (after ``bench compare`` or ``sweep``); warn instead if there is none."""
    try:
        groups = group_runs(load_runs([folder]), fid_target, by_hparams=by_hparams)
    except BenchError as exc:
        console.warn(f"no comparison table: {exc}")
        return []
    terminal.print_comparison(groups)
    console.out.print(f"comparison: {folder}  (tensorboard --logdir {folder})", markup=False, highlight=False,
                      soft_wrap=True)
    return groups
