"""Comparison groups as text: one table of formats, one renderer per format, and provenance.

Markdown and LaTeX draw the same columns, cells and notes as the terminal table (from
:mod:`bench.report.cells`), and under each table the pairwise tests on FID; CSV and JSON hold the
numbers as data (CSV's pairwise tests and per-run values go to ``<stem>-pairs.csv`` and ``<stem>-runs.csv``). A Markdown
report also links its figures and says how it was made: which package and version provided each
architecture, the commands in the plans of the runs' comparison and sweep folders, and the
report's own command (LaTeX keeps them as comments). LaTeX is one complete ``table`` float per
group, ready for a paper.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shlex
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import console
from bench.report import cells
from bench.errors import UsageError
from bench.layout import PLAN
from bench.plans.plan import Plan
from bench.scores import METRIC_NAMES
from bench.report.aggregate import Group, LoadedRun, Row, RowPair, evaluation_settings, time_to_quality
from bench.schema import to_plain
from bench.stats import ALPHA, CONFIDENCE, MIN_INTERVAL_SEEDS, Stats

#: The LaTeX table's label when ``--label`` is not given (``-1``, ``-2``... with several groups).
DEFAULT_LABEL = "tab:gan-bench"
#: The columns of a LaTeX table when ``--columns`` is not given: with four-digit FIDs and a partial time to quality
#: they fit the text width of a standard article (345 pt) at \small; the step time (another 85 pt) does not.
LATEX_COLUMNS = ("arch", "runs", "fid", "fid_ci", "precision", "recall", "ttq_s")


@dataclass(frozen=True)
class Extras:
    """What a report adds around its tables, and how its tables are drawn (Markdown and LaTeX)."""

    figures: Sequence[str] = ()  # paths relative to the report file
    command: str | None = None  # the command that made the report
    intro: str | None = None  # a paragraph for the top
    columns: Sequence[str] | None = None  # column keys, in order (None: the format's default)
    digits: int | None = None  # significant digits of the numbers (None: the tables' defaults)
    caption: str | None = None  # LaTeX: the table's caption (None: the device and protocol)
    label: str | None = None  # LaTeX: the table's label (None: DEFAULT_LABEL)


@dataclass(frozen=True)
class Format:
    """One output format: its renderer, the file suffix it suggests, and the files it writes beside.

    ``companions`` render further files by name: written beside ``--out`` as ``<stem>-<name>.<suffix>``.
    """

    render: Callable[[list[Group], Extras], str]
    suffix: str
    companions: dict[str, Callable[[list[Group]], str]] = field(default_factory=dict)


# JSON ---------------------------------------------------------------------------------------


def _stat_dict(stat: Stats) -> dict[str, Any]:
    return {"mean": stat.mean, "std": stat.std, "n": stat.n, "ci_low": stat.ci_low, "ci_high": stat.ci_high}


def _side_by_side_dict(row: Row) -> dict[str, Any] | None:
    s = row.side_by_side
    if s is None:
        return None
    return {"median": s.median, "p10": s.p10, "p90": s.p90, "n": s.n, "wide": row.side_by_side_wide}


def run_dict(run: LoadedRun, fid_target: float) -> dict[str, Any]:
    """One run's own values, from which its row's statistics and tests are computed (the JSON's ``per_run`` and
    the runs CSV)."""
    metrics = run.record.metrics
    contention = run.record.contention
    reached = time_to_quality(run.evaluations, fid_target)
    return {
        "seed": run.seed, "status": run.status, "run_dir": run.path.name, "steps": run.record.steps,
        "wall_s": run.record.timing.wall_s, "cpu_s": None if contention is None else contention.cpu_s,
        **{m: None if metrics is None else metrics.value(m) for m in METRIC_NAMES},
        "ttq_step": None if reached is None else reached.step,
        "ttq_wall_s": None if reached is None else reached.train_wall_s,
        "ttq_cpu_s": None if reached is None else reached.train_cpu_s,
    }


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
                            "wall_s": t.wall_s, "cpu_s": t.cpu_s},
        "best_fid": row.best,
        "step_ms_side_by_side": _side_by_side_dict(row),
        "contended_runs": row.contended,
        "shared": row.sharing,
        "per_run": [run_dict(run, t.target) for run in row.runs],
        "cpu_share": [None if r.record.contention is None else r.record.contention.cpu_share for r in row.runs],
    }


def pair_dict(group: Group, pair: RowPair) -> dict[str, Any]:
    """One pairwise test on FID as plain data (what the JSON's ``pairs`` and the pairs CSV hold)."""
    t = pair.test
    return {"a": cells.row_label(group, pair.a), "b": cells.row_label(group, pair.b), "n_a": t.n_a, "n_b": t.n_b,
            "a_beats_b": t.a_beats_b, "a_beats_b_low": t.a_beats_b_low, "a_beats_b_high": t.a_beats_b_high,
            "u": t.u, "p": t.p, "p_holm": t.p_holm, "p_floor": t.p_floor,
            "different": t.different, "too_few": t.too_few, "verdict": cells.verdict_text(group, pair)}


#: How the statistics were made (the JSON's ``statistics``), so a reader can redo them.
STATISTICS = {
    "interval": f"Student t interval of the mean over seeds, {CONFIDENCE:.0%} (scipy.stats.t), none under "
                f"{MIN_INTERVAL_SEEDS} seeds",
    "test": "two-sided Mann-Whitney U on final FID (scipy.stats.mannwhitneyu, method auto)",
    "correction": "Holm over the pairs of the table", "alpha": ALPHA,
    "a_beats_b": "share of seed pairs with A's FID lower, ties counting half",
}


def _step_times_dict(group: Group) -> dict[str, Any] | None:
    side = group.side_by_side
    if side is None:
        return None
    t = side.times
    return {"folder": str(side.folder), "rounds": t.rounds, "steps_per_round": t.steps_per_round,
            "warmup_steps": t.warmup_steps, "threads": t.threads, "created": t.created}


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
        "step_times": _step_times_dict(group),
        "statistics": STATISTICS,
        "pairs": [pair_dict(group, pair) for pair in group.pairs],
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
    # Added by the tested differences and the side-by-side timing, after the columns older readers know.
    *[f"{m}_ci_{end}" for m in METRIC_NAMES for end in ("low", "high")],
    "step_ms_side_by_side_median", "step_ms_side_by_side_p10", "step_ms_side_by_side_p90",
    "step_ms_side_by_side_wide", "contended_runs", "shared", "ttq_cpu_s",
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
        "ttq_step": t["step"], "ttq_wall_s": t["wall_s"], "ttq_cpu_s": t["cpu_s"],
        **{k: d[k] for k in _ROW_COLUMNS},
        **{f"{m}_ci_{end}": d[m][f"ci_{end}"] for m in METRIC_NAMES for end in ("low", "high")},
        **{f"step_ms_side_by_side_{k}": (d["step_ms_side_by_side"] or {}).get(k) for k in ("median", "p10", "p90")},
        "step_ms_side_by_side_wide": (d["step_ms_side_by_side"] or {}).get("wide"),
        "contended_runs": d["contended_runs"],
        "shared": "; ".join(d["shared"]),
    }


def _csv_text(columns: Sequence[str], lines: Iterable[dict[str, Any]]) -> str:
    """CSV with a header of ``columns`` and one line per dict of ``lines`` (None as an empty cell)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for values in lines:
        writer.writerow(["" if values[c] is None else values[c] for c in columns])
    return buf.getvalue()


def render_csv(groups: list[Group], extras: Extras) -> str:
    """The groups as CSV, one line per row, its group's device and protocol repeated on it."""
    return _csv_text(CSV_COLUMNS, ({**_group_columns(index, group), **_row_columns(row)}
                                   for index, group in enumerate(groups, 1) for row in group.rows))


#: The columns of the pairwise tests' CSV (``<stem>-pairs.csv``): one line per pair of rows in a group.
PAIR_CSV_COLUMNS = ("group", "device", "a", "b", "n_a", "n_b", "a_beats_b", "a_beats_b_low", "a_beats_b_high", "u",
                    "p", "p_holm", "p_floor", "different", "too_few", "verdict")


#: The columns of the runs CSV (``<stem>-runs.csv``): one line per run, what its row's statistics and tests are
#: computed from, so anyone can redo them.
RUN_CSV_COLUMNS = ("group", "device", "arch", "hparams", "seed", "status", "run_dir", "steps", "wall_s", "cpu_s",
                   *METRIC_NAMES, "ttq_step", "ttq_wall_s", "ttq_cpu_s")


def render_runs_csv(groups: list[Group]) -> str:
    """Every run of every group as CSV, one line each, with its row's architecture and hyperparameters."""
    return _csv_text(RUN_CSV_COLUMNS, (
        {"group": index, "device": group.device, "arch": row.arch,
         "hparams": json.dumps(row.hparams, sort_keys=True) if row.hparams is not None else None,
         **run_dict(run, row.ttq.target)}
        for index, group in enumerate(groups, 1) for row in group.rows for run in row.runs))


def render_pairs_csv(groups: list[Group]) -> str:
    """The pairwise tests on FID of every group as CSV."""
    return _csv_text(PAIR_CSV_COLUMNS, ({"group": index, "device": group.device, **pair_dict(group, pair)}
                                        for index, group in enumerate(groups, 1) for pair in group.pairs))


# Markdown -----------------------------------------------------------------------------------

_FIGURE_CAPTIONS = {
    "losses": "Generator and discriminator losses (mean over seeds)",
    "fid-vs-time": "FID against training time",
    "fid-vs-batches": "FID against training batches",
    "fid-vs-compute": "FID for compute: against training FLOPs and against training time (one line per seed)",
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


def portable(command: str) -> str:
    """``command`` without this machine's folders: an absolute path keeps only its last part, after ``.../``."""
    words = shlex.split(command)
    return shlex.join(f".../{Path(word).name}" if os.path.isabs(word) else word for word in words)


def provenance(groups: list[Group], command: str | None = None) -> list[str]:
    """The commands that made these runs (from their comparison and sweep plans) and, given, this report."""
    folders = sorted({run.path.parent for group in groups for run in group.runs})
    commands = [text for text in map(plan_command, folders) if text is not None]
    return [portable(text) for text in (commands + [command] if command else commands)]


def recorded_commands(groups: list[Group]) -> list[str]:
    """Every command that wrote these runs as the runs recorded it (``--resume`` too), with the gan-bench commit it
    ran and how many runs it wrote, folder by folder; runs that recorded no command are left out."""
    seen: Counter[tuple[str, str, str]] = Counter()
    for run in (run for group in groups for run in group.runs):
        env = run.record.env
        if env.argv:
            command = f"{env.program or console.MODULE_PROGRAM} {shlex.join(env.argv)}"
            seen[(run.path.parent.name, command, env.git_commit or "not recorded")] += 1
    return [f"{portable(command)}  # {folder}: {n} run{'s' if n > 1 else ''}, "
            f"gan-bench commit {commit}" for (folder, command, commit), n in sorted(seen.items())]


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
    commands, recorded = provenance(groups, command), recorded_commands(groups)
    sources = architecture_sources(groups)
    if not commands and not recorded and sources is None:
        return []
    lines = ["## How this was made", "", "Generated by gan-bench; do not edit by hand.", ""]
    if sources is not None:
        lines += [sources, ""]
    if commands:
        lines += ["To reproduce:", "", "```sh", *commands, "```", ""]
    if recorded:
        lines += ["The commands that wrote the runs, as the runs recorded them, with the gan-bench commit each ran "
                  "(\"-dirty\": with local changes) and the runs it wrote:", "", "```sh", *recorded, "```", ""]
    return lines


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_rows(header: Sequence[tuple[str, bool]], rows: list[list[tuple[str, bool]]]) -> list[str]:
    """A Markdown table: ``(header, numeric)`` per column, ``(text, bold)`` per cell."""
    lines = ["| " + " | ".join(_md_cell(h) for h, _ in header) + " |",
             "| " + " | ".join("---:" if numeric else "---" for _, numeric in header) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(f"**{_md_cell(t)}**" if bold else _md_cell(t) for t, bold in row) + " |")
    return lines


def _md_table(index: int, group: Group, extras: Extras) -> list[str]:
    columns = cells.comparison_columns(group, columns=extras.columns)
    lines = [f"## {cells.comparison_title(index, group)}", ""]
    lines += _md_rows([(h, numeric) for _, h, numeric in columns],
                      [cells.comparison_cells(group, row, columns=extras.columns, digits=extras.digits)
                       for row in group.rows])
    lines.append("")
    lines += [f"- {note}" for note in cells.comparison_notes(group)]
    lines.append("")
    if group.pairs:
        keys = [key for key, _, _ in cells.PAIR_COLUMNS]
        pair_rows = [[(text, key == "verdict" and pair.test.winner is not None)  # a verdict that found a difference
                      for key, text in zip(keys, cells.pair_cells(group, pair, extras.digits), strict=True)]
                     for pair in group.pairs]
        lines += [f"### {cells.PAIRS_TITLE}", ""]
        lines += _md_rows([(h, numeric) for _, h, numeric in cells.PAIR_COLUMNS], pair_rows)
        lines.append("")
        lines += [f"- {note}" for note in cells.pair_notes(group)]
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
        lines += _md_table(index, group, extras)
    if extras.figures:
        lines += _md_figures(extras.figures)
    lines += _md_provenance(groups, extras.command)
    return "\n".join(lines)


# LaTeX --------------------------------------------------------------------------------------

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "±": r"$\pm$", "·": r"$\cdot$", "×": r"$\times$", "³": r"$^3$", "†": r"\dag{}", "‡": r"\ddag{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in ``text``."""
    return "".join(_LATEX_ESCAPES.get(c, c) for c in text)


def latex_columns(group: Group) -> list[str]:
    """The default columns of a group's LaTeX table: :data:`LATEX_COLUMNS`, and the hyperparameters of a sweep."""
    return ["arch", "hparams", *LATEX_COLUMNS[1:]] if group.by_hparams else list(LATEX_COLUMNS)


def _latex_caption(index: int, groups: list[Group], extras: Extras) -> str:
    """The float's caption: ``--caption`` (numbered when there are several groups), else the device and protocol."""
    group = groups[index - 1]
    if extras.caption is None:
        return latex_escape(f"GAN architectures on MNIST, {group.device}: {cells.describe_protocol(group.protocol)}")
    suffix = f" ({index} of {len(groups)})" if len(groups) > 1 else ""
    return latex_escape(extras.caption + suffix)


def _latex_label(index: int, groups: list[Group], extras: Extras) -> str:
    label = extras.label or DEFAULT_LABEL
    return f"{label}-{index}" if len(groups) > 1 else label


def _latex_notes(lines: Sequence[str]) -> list[str]:
    return ["\\par\\smallskip", "{\\footnotesize\\raggedright", *[f"{latex_escape(line)}\\par" for line in lines], "}"]


def _latex_table(index: int, groups: list[Group], extras: Extras) -> list[str]:
    group = groups[index - 1]
    keys = extras.columns or latex_columns(group)
    columns = cells.comparison_columns(group, columns=keys)
    label = _latex_label(index, groups, extras)
    out = ["\\begin{table}[tbp]", "\\centering", "\\small", "\\setlength{\\tabcolsep}{3pt}",
           f"\\caption{{{_latex_caption(index, groups, extras)}}}", f"\\label{{{label}}}",
           "\\begin{tabular}{" + "".join("r" if numeric else "l" for _, _, numeric in columns) + "}",
           "\\toprule",
           " & ".join(latex_escape(h) for _, h, _ in columns) + " \\\\",
           "\\midrule"]
    for row in group.rows:
        texts = [f"\\textbf{{{latex_escape(t)}}}" if best else latex_escape(t)
                 for t, best in cells.comparison_cells(group, row, columns=keys, digits=extras.digits)]
        out.append(" & ".join(texts) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    own = [] if extras.caption is None else [cells.comparison_title(index, group)]
    out += _latex_notes(own + cells.comparison_notes(group))
    out += ["\\end{table}", ""]
    if group.pairs:
        out += _latex_pairs(index, groups, extras, label)
    return out


def _latex_pairs(index: int, groups: list[Group], extras: Extras, label: str) -> list[str]:
    """The pairwise tests as a float of their own; tabularx, so that the verdicts wrap within the text width."""
    group = groups[index - 1]
    caption = f"{cells.PAIRS_TITLE}, for Table~\\ref{{{label}}}"
    # tabularx loads array, whose >{...} keeps the verdicts ragged-right rather than stretched.
    spec = "".join(r">{\raggedright\arraybackslash}X" if key == "verdict" else "r" if numeric else "l"
                   for key, _, numeric in cells.PAIR_COLUMNS)
    out = ["\\begin{table}[tbp]", "\\centering", "\\footnotesize", "\\setlength{\\tabcolsep}{3pt}",
           f"\\caption{{{caption}}}", f"\\label{{{label}-pairs}}",
           f"\\begin{{tabularx}}{{\\linewidth}}{{{spec}}}", "\\toprule",
           " & ".join(latex_escape(h) for _, h, _ in cells.PAIR_COLUMNS) + " \\\\", "\\midrule"]
    for pair in group.pairs:
        texts = [latex_escape(text) for text in cells.pair_cells(group, pair, extras.digits)]
        if pair.test.winner is not None:
            texts[-1] = f"\\textbf{{{texts[-1]}}}"
        out.append(" & ".join(texts) + " \\\\")
    out += ["\\bottomrule", "\\end{tabularx}"]
    out += _latex_notes(cells.pair_notes(group))
    out += ["\\end{table}", ""]
    return out


#: What a LaTeX report needs in the document's preamble.
LATEX_PREAMBLE = "\\usepackage{booktabs}  % and, for the pairwise tests, \\usepackage{tabularx}"


def render_latex(groups: list[Group], extras: Extras) -> str:
    """The groups as complete LaTeX ``table`` floats (booktabs), one per group, and one for its pairwise tests."""
    out = [f"% Generated by gan-bench report; needs {LATEX_PREAMBLE}."]
    commands = provenance(groups, extras.command)
    if commands:
        out += ["% To reproduce:", *[f"%   {command}" for command in commands]]
    out.append("")
    for index in range(1, len(groups) + 1):
        out += _latex_table(index, groups, extras)
    return "\n".join(out)


# The formats --------------------------------------------------------------------------------

#: Every output format by name (``--format``), in the order the help lists them.
FORMATS: dict[str, Format] = {
    "md": Format(render_md, "md"),
    "csv": Format(render_csv, "csv", {"pairs": render_pairs_csv, "runs": render_runs_csv}),
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
           intro: str | None = None, **style: Any) -> str:
    """Render the groups as ``md``, ``csv``, ``json`` or ``latex`` text.

    ``figures`` (paths relative to the output file) are linked from Markdown, which also
    lists the commands that made the runs and, given ``command``, the report itself.
    ``style``: ``columns``, ``digits``, ``caption`` and ``label`` (see :class:`Extras`).
    """
    return output_format(fmt).render(groups, Extras(tuple(figures), command, intro, **style))
