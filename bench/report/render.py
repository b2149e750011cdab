"""Comparison groups as text: one table of formats, one renderer per format, and provenance.

Markdown and LaTeX draw the same columns, cells and notes as the terminal table (from
:mod:`bench.tables`); CSV and JSON hold the numbers as data. A Markdown report also links its
figures and says how it was made: which package and version provided each architecture, the
commands in the plans of the runs' comparison and sweep folders, and the report's own command.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import tables
from bench.errors import UsageError
from bench.layout import PLAN
from bench.plans.plan import Plan
from bench.record import METRIC_NAMES
from bench.report.aggregate import Group, Row, evaluation_settings
from bench.schema import to_plain
from bench.stats import Stats


@dataclass(frozen=True)
class Extras:
    """What a report adds around its tables (only Markdown shows them)."""

    figures: Sequence[str] = ()  # paths relative to the report file
    command: str | None = None  # the command that made the report
    intro: str | None = None  # a paragraph for the top


@dataclass(frozen=True)
class Format:
    """One output format: its renderer and the file suffix it suggests."""

    render: Callable[[list[Group], Extras], str]
    suffix: str


# JSON ---------------------------------------------------------------------------------------


def _stat_dict(stat: Stats) -> dict[str, Any]:
    return {"mean": stat.mean, "std": stat.std, "n": stat.n}


def row_dict(row: Row) -> dict[str, Any]:
    """A row as plain data (what the JSON output holds per architecture)."""
    t = row.ttq
    return {
        "arch": row.arch,
        **({"hparams": row.hparams} if row.hparams is not None else {}),
        "runs": len(row.runs),
        "seeds": row.seeds,
        "status": row.status,
        "run_dirs": [str(r.path) for r in row.runs],
        "params_g": row.params_g,
        "params_d": row.params_d,
        "flops_per_step": row.flops_per_step,
        "step_ms_median": row.step_ms_median,
        "images_per_s": row.images_per_s.mean,
        "wall_s": row.wall_s.mean,
        **{m: _stat_dict(row.metrics[m]) for m in METRIC_NAMES},
        "time_to_quality": {"fid_target": t.target, "reached": t.reached, "runs": t.runs, "step": t.step,
                            "wall_s": t.wall_s},
        "best_fid": row.best,
    }


def group_dict(group: Group) -> dict[str, Any]:
    """A group as plain data (one element of the JSON output)."""
    references = group.references
    return {
        "device": group.device,
        "protocol": group.protocol,
        "mixed": group.mixed,
        "fid_target": group.fid_target,
        "references": None if references is None else {k: to_plain(v) for k, v in references.items()},
        "rows": [row_dict(row) for row in group.rows],
    }


def _plain(data: Any) -> Any:
    """``data`` with NaN and infinities as None, so the JSON is strict."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    return data


def render_json(groups: list[Group], extras: Extras) -> str:
    """The groups as a JSON list, one object per group with its rows."""
    return json.dumps(_plain([group_dict(g) for g in groups]), indent=2, allow_nan=False) + "\n"


# CSV ----------------------------------------------------------------------------------------

_STAT_PARTS = ("mean", "std", "n")
CSV_COLUMNS = (
    "group", "device", "budget", "batch_size", "train_subset", "precision", "eval_protocol", "mixed",
    "arch", "hparams", "runs", "seeds", "status", "params_g", "params_d", "flops_per_step", "step_ms_median",
    "images_per_s", "wall_s", *[f"{m}_{s}" for m in METRIC_NAMES for s in _STAT_PARTS],
    "fid_target", "ttq_reached", "ttq_runs", "ttq_step", "ttq_wall_s", "best_fid",
)
#: Columns whose values are a row's own (``row_dict``) under the same name.
_ROW_COLUMNS = ("arch", "runs", "params_g", "params_d", "flops_per_step", "step_ms_median", "images_per_s", "wall_s",
                "best_fid")


def _group_columns(index: int, group: Group) -> dict[str, Any]:
    p = group.protocol
    evaluation = evaluation_settings(p)
    return {
        "group": index, "device": group.device, "budget": p.get("budget"), "batch_size": p.get("batch_size"),
        "train_subset": p.get("train_subset"), "precision": p.get("precision"),
        "eval_protocol": json.dumps(evaluation, sort_keys=True) if evaluation else None,
        "mixed": json.dumps(group.mixed, default=str) if group.mixed else None,
    }


def _row_columns(row: Row) -> dict[str, Any]:
    d = row_dict(row)
    t = d["time_to_quality"]
    return {
        "hparams": json.dumps(row.hparams, sort_keys=True) if row.hparams is not None else None,
        "seeds": " ".join(map(str, row.seeds)),
        "status": "; ".join(f"{n} {s}" for s, n in row.status.items()),
        **{f"{m}_{s}": d[m][s] for m in METRIC_NAMES for s in _STAT_PARTS},
        "fid_target": t["fid_target"], "ttq_reached": t["reached"], "ttq_runs": t["runs"],
        "ttq_step": t["step"], "ttq_wall_s": t["wall_s"],
        **{k: d[k] for k in _ROW_COLUMNS},
    }


def render_csv(groups: list[Group], extras: Extras) -> str:
    """The groups as CSV, one line per row, its group's device and protocol repeated on it."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for index, group in enumerate(groups, 1):
        for row in group.rows:
            values = {**_group_columns(index, group), **_row_columns(row)}
            writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])
    return buf.getvalue()


# Markdown -----------------------------------------------------------------------------------

_FIGURE_CAPTIONS = {
    "losses": "Generator and discriminator losses (mean over seeds)",
    "fid-vs-time": "FID against training time",
    "fid-vs-batches": "FID against training batches",
    "samples": "Final samples (seed 0 of each architecture)",
}


def plan_command(folder: Path) -> str | None:
    """The command that made the plan in ``folder``, or None where there is none or it is damaged."""
    if not (folder / PLAN).is_file():
        return None
    try:
        return Plan.load(folder).command_text()
    except UsageError:
        return None  # a damaged plan only costs the provenance line


def provenance(groups: list[Group], command: str | None = None) -> list[str]:
    """The commands that made these runs (from their comparison and sweep plans) and, given, this report."""
    folders = sorted({run.path.parent for group in groups for run in group.runs})
    commands = [text for text in map(plan_command, folders) if text is not None]
    return commands + [command] if command else commands


def architecture_sources(groups: list[Group]) -> str | None:
    """``architectures: vanilla, wgan from gan-bench 0.1.0; ...``, or None where no run records its package."""
    sources: dict[tuple[str, str], set[str]] = {}
    for run in (run for group in groups for run in group.runs):
        record = run.record
        sources.setdefault((record.package or "", record.package_version or ""), set()).add(record.arch)
    if set(sources) <= {("", "")}:
        return None  # runs of a release that did not record it
    parts = [", ".join(sorted(archs)) + (f" from {pkg} {version}".rstrip() if pkg else " (package not recorded)")
             for (pkg, version), archs in sorted(sources.items(), key=lambda item: (not item[0][0], item[0]))]
    return "architectures: " + "; ".join(parts)


def _md_provenance(groups: list[Group], command: str | None) -> list[str]:
    """The "How this was made" section: which packages provided the architectures, and the commands."""
    commands = provenance(groups, command)
    sources = architecture_sources(groups)
    if not commands and sources is None:
        return []
    lines = ["## How this was made", "", "Generated by gan-bench; do not edit by hand.", ""]
    if sources is not None:
        lines += [sources, ""]
    if commands:
        lines += ["To reproduce:", "", "```sh", *commands, "```", ""]
    return lines


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(index: int, group: Group) -> list[str]:
    columns = tables.comparison_columns(group)
    lines = [f"## {tables.comparison_title(index, group)}", ""]
    lines.append("| " + " | ".join(_md_cell(h) for _, h, _ in columns) + " |")
    lines.append("| " + " | ".join("---:" if numeric else "---" for _, _, numeric in columns) + " |")
    for row in group.rows:
        cells = [f"**{_md_cell(t)}**" if best else _md_cell(t) for t, best in tables.comparison_cells(group, row)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {note}" for note in tables.comparison_notes(group)]
    lines.append("")
    return lines


def _md_figures(figures: Sequence[str]) -> list[str]:
    lines = ["## Figures", ""]
    for name in figures:
        kind = next((k for k in _FIGURE_CAPTIONS if name.endswith(f"-{k}.png")), "")
        lines += [f"![{_FIGURE_CAPTIONS.get(kind, name)}]({name})", ""]
    return lines


def render_md(groups: list[Group], extras: Extras) -> str:
    """The groups as a Markdown page: intro, one table per group, figures, and how it was made."""
    runs = sum(len(g.runs) for g in groups)
    lines = ["# GAN architectures on MNIST", ""] + ([extras.intro, ""] if extras.intro else []) + [
             f"{runs} run(s) in {len(groups)} table(s), one per device and protocol; rows aggregate seeds.", ""]
    for index, group in enumerate(groups, 1):
        lines += _md_table(index, group)
    if extras.figures:
        lines += _md_figures(extras.figures)
    lines += _md_provenance(groups, extras.command)
    return "\n".join(lines)


# LaTeX --------------------------------------------------------------------------------------

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "±": r"$\pm$", "·": r"$\cdot$", "×": r"$\times$", "³": r"$^3$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in ``text``."""
    return "".join(_LATEX_ESCAPES.get(c, c) for c in text)


def _latex_table(index: int, group: Group) -> list[str]:
    columns = tables.comparison_columns(group)
    out = [f"\\noindent\\textbf{{{latex_escape(tables.comparison_title(index, group))}}}\\par\\smallskip",
           "\\begin{tabular}{" + "".join("r" if numeric else "l" for _, _, numeric in columns) + "}",
           "\\toprule",
           " & ".join(latex_escape(h) for _, h, _ in columns) + " \\\\",
           "\\midrule"]
    for row in group.rows:
        cells = [f"\\textbf{{{latex_escape(t)}}}" if best else latex_escape(t)
                 for t, best in tables.comparison_cells(group, row)]
        out.append(" & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}\\par\\smallskip"]
    out += [f"{latex_escape(note)}\\par" for note in tables.comparison_notes(group)]
    out.append("")
    return out


def render_latex(groups: list[Group], extras: Extras) -> str:
    """The groups as LaTeX tabulars (booktabs), one per group, with their notes."""
    out = ["% Generated by gan-bench report; needs \\usepackage{booktabs}.", ""]
    for index, group in enumerate(groups, 1):
        out += _latex_table(index, group)
    return "\n".join(out)


# The formats --------------------------------------------------------------------------------

#: Every output format by name (``--format``), in the order the help lists them.
FORMATS: dict[str, Format] = {
    "md": Format(render_md, "md"),
    "csv": Format(render_csv, "csv"),
    "json": Format(render_json, "json"),
    "latex": Format(render_latex, "tex"),
}


def output_format(name: str) -> Format:
    """The format called ``name``; an unknown name is a :class:`UsageError` that lists the formats."""
    try:
        return FORMATS[name]
    except KeyError:
        raise UsageError(f"unknown report format {name!r}; choose from: {', '.join(FORMATS)}") from None


def render(groups: list[Group], fmt: str, figures: Sequence[str] = (), command: str | None = None,
           intro: str | None = None) -> str:
    """Render the groups as ``md``, ``csv``, ``json`` or ``latex`` text.

    ``figures`` (paths relative to the output file) are linked from Markdown, which also
    lists the commands that made the runs and, given ``command``, the report itself.
    """
    return output_format(fmt).render(groups, Extras(tuple(figures), command, intro))
