"""``bench report``: compare finished runs under one protocol and publish the table.

Run folders are loaded, grouped by the machine they ran on and by their protocol (budget,
batch size, training subset, precision, evaluation protocol), and aggregated per
architecture over seeds. Runs with different protocols never share a row unless asked.
The result renders as Markdown, CSV, JSON or LaTeX, with figures beside it.

The MNIST loader checks every data file by SHA-256, so ``config.data_dir`` never changes
the images and is not part of the protocol; ``train_subset`` is.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shlex
import sys
import statistics
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench import console, tables
from bench.errors import UsageError
from bench.results import atomic_path, read_record, write_text

#: FID (MNIST-classifier features) a run must fall below to count as having reached
#: quality. On this scale MNIST train vs test is 2.5 and uniform noise 2676; in the
#: published 90-second CPU comparison (results/README.md) the built-ins ended between 900
#: and 1900, and only the quickest learners (dcgan, lsgan) got below 1000 in that time, so
#: 1000 separates them. Give a lower --fid-target for longer budgets.
DEFAULT_FID_TARGET = 1000.0
FORMATS = ("md", "csv", "json", "latex")
#: Final-evaluation metrics aggregated over seeds (mean and sample std).
METRICS = ("fid", "kid", "precision", "recall", "modes_covered", "classifier_score", "mode_kl")


# Loading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """One run folder and its run.json."""

    path: Path
    record: dict[str, Any]
    protocol: dict[str, Any]

    @property
    def arch(self) -> str:
        return self.record["arch"]

    @property
    def status(self) -> str:
        return self.record["status"]

    @property
    def seed(self) -> int:
        return self.record["config"]["seed"]

    @property
    def device(self) -> str:
        return str(self.record["env"]["device_name"])

    @property
    def hparams(self) -> dict[str, Any]:
        return self.record["config"].get("hparams") or {}

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.get("metrics") or {}

    @property
    def evaluations(self) -> list[dict[str, Any]]:
        return self.record.get("evaluations") or []

    @property
    def evaluated(self) -> bool:
        """Whether the run records its evaluation protocol (older and unevaluated runs do not)."""
        return any(k.startswith("eval.") for k in self.protocol)


def _flatten(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key in sorted(data):
        value = data[key]
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            flat[prefix + key] = json.dumps(value)  # hashable and comparable
        else:
            flat[prefix + key] = value
    return flat


def _budget_text(kind: str, value: Any) -> str:
    if kind == "time_budget":
        return f"{value:g} s time budget"
    if kind == "steps":
        return f"{int(value):,} steps"
    return f"{value:g} {kind}"


def protocol_of(record: dict[str, Any]) -> dict[str, Any]:
    """The settings that must match for two runs to share a row, flat (``eval.*`` from metrics.protocol)."""
    cfg = record["config"]
    protocol = {
        "budget": _budget_text(cfg["budget"]["kind"], cfg["budget"]["value"]),
        "batch_size": cfg["batch_size"],
        "train_subset": cfg.get("train_subset"),
        "precision": cfg.get("precision") or "fp32",
    }
    evaluation = (record.get("metrics") or {}).get("protocol")
    if isinstance(evaluation, dict):
        protocol.update(_flatten(evaluation, "eval."))
    return protocol


def _load_one(folder: Path) -> RunRecord:
    data = read_record(folder)
    return RunRecord(folder, data, protocol_of(data))


def _run_folders(root: Path) -> Iterable[Path]:
    for here, dirs, files in os.walk(root):
        if "run.json" in files:
            dirs[:] = []  # a run folder's own subfolders (tb/) hold no runs
            yield Path(here)
        else:
            dirs.sort()


def load_runs(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> list[RunRecord]:
    """Load the runs in ``paths``: run folders, their run.json, or folders holding run folders (recursively).

    Raises:
        UsageError: a path does not exist, a run.json is damaged or newer than this version
            reads, or no run is found.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[Path, Path] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        if path.is_file():
            if path.name != "run.json":
                raise UsageError(f"{path}: not a run folder, a folder of runs, or a run.json")
            folders: Iterable[Path] = [path.parent]
        else:
            folders = _run_folders(path)
        for folder in folders:
            found.setdefault(folder.resolve(), folder)
    if not found:
        where = ", ".join(str(p) for p in paths)
        raise UsageError(f"no runs found in {where} (a run folder holds a run.json)")
    return [_load_one(found[key]) for key in sorted(found)]


# Aggregation --------------------------------------------------------------------------------


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1; None for one value) of the finite values."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[Any]) -> "Stat":
        xs = [float(v) for v in values if _finite(v)]
        if not xs:
            return cls(None, None, 0)
        return cls(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


@dataclass(frozen=True)
class TimeToQuality:
    """When the runs of a row first reached FID below ``target``: medians over the runs that did."""

    target: float
    reached: int
    runs: int  # runs with an evaluation log
    step: float | None
    wall_s: float | None


def time_to_quality(evaluations: Iterable[dict[str, Any]], target: float) -> tuple[int, float] | None:
    """Return ``(step, train_wall_s)`` of the first evaluation with FID below ``target``, or None."""
    rows = [e for e in evaluations if _finite(e.get("fid")) and _finite(e.get("step"))]
    for e in sorted(rows, key=lambda e: e["step"]):
        if e["fid"] < target:
            wall = e.get("train_wall_s")
            return int(e["step"]), float(wall) if _finite(wall) else math.nan
    return None


@dataclass
class Row:
    """One architecture (and hyperparameter point, when grouped by them) in one group."""

    arch: str
    runs: list[RunRecord]
    hparams: dict[str, Any] | None
    status: dict[str, int]
    params_g: int | None
    params_d: int | None
    flops_per_step: int | None
    step_ms_median: float | None
    images_per_s: Stat
    wall_s: Stat
    metrics: dict[str, Stat]
    ttq: TimeToQuality
    best: bool = False

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    @property
    def diverged(self) -> bool:
        return bool(self.status.get("diverged"))


_STATUS_ORDER = {"completed": 0, "diverged": 1, "interrupted": 2}


def _first(values: Iterable[Any]) -> Any:
    return next((v for v in values if v is not None), None)


def aggregate(arch: str, runs: list[RunRecord], fid_target: float, hparams: dict[str, Any] | None = None) -> Row:
    """Aggregate the runs of one architecture over seeds into a row."""
    status = Counter(r.status for r in runs)
    logged = [r for r in runs if any(_finite(e.get("fid")) for e in r.evaluations)]
    hits = [hit for hit in (time_to_quality(r.evaluations, fid_target) for r in logged) if hit is not None]
    step_ms = [r.record["timing"]["step_ms_median"] for r in runs if _finite(r.record["timing"]["step_ms_median"])]
    return Row(
        arch=arch,
        runs=runs,
        hparams=hparams,
        status={s: status[s] for s in sorted(status, key=lambda s: (_STATUS_ORDER.get(s, 9), s))},
        params_g=_first(r.record["params"].get("generator") for r in runs),
        params_d=_first(r.record["params"].get("discriminator") for r in runs),
        flops_per_step=_first(r.record.get("flops_per_step") for r in runs),
        step_ms_median=statistics.median(step_ms) if step_ms else None,
        images_per_s=Stat.of(r.record["timing"]["images_per_s"] for r in runs),
        wall_s=Stat.of(r.record["timing"]["wall_s"] for r in runs),
        metrics={m: Stat.of(r.metrics.get(m) for r in runs) for m in METRICS},
        ttq=TimeToQuality(
            target=fid_target,
            reached=len(hits),
            runs=len(logged),
            step=statistics.median(h[0] for h in hits) if hits else None,
            wall_s=statistics.median(h[1] for h in hits) if hits else None,
        ),
    )


@dataclass
class Group:
    """Runs on one device under one protocol (or several, with ``allow_mixed``): one row per architecture."""

    device: str
    protocol: dict[str, Any]
    rows: list[Row]
    fid_target: float
    mixed: dict[str, list[Any]] = field(default_factory=dict)
    references: dict[str, Any] | None = None
    by_hparams: bool = False

    @property
    def runs(self) -> list[RunRecord]:
        return [r for row in self.rows for r in row.runs]


def _key(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, default=str)


def _training(protocol: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in protocol.items() if not k.startswith("eval.")}


def _differences(protocols: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The settings whose values differ, each with its distinct values.

    A protocol without evaluation settings (an unevaluated or older run) differs in none of them.
    """
    out: dict[str, list[Any]] = {}
    for key in sorted({k for p in protocols for k in p}):
        among = [p for p in protocols if not key.startswith("eval.") or any(k.startswith("eval.") for k in p)]
        values = {_key({"v": p.get(key)}): p.get(key) for p in among}
        if len(values) > 1:
            out[key] = sorted(values.values(), key=_value_order)
    return out


def _value_order(value: Any) -> tuple[int, Any]:
    """Numbers in numeric order, then text, then None (``train_subset`` None means all images)."""
    if _finite(value):
        return 0, value
    return (2, "") if value is None else (1, str(value))


def _buckets(runs: list[RunRecord]) -> dict[tuple[str, str], tuple[dict[str, Any], list[RunRecord]]]:
    """Split runs by device and protocol; a run without an evaluation protocol joins the one
    group of its device whose training protocol matches (its evaluated seeds), if there is one."""
    buckets: dict[tuple[str, str], tuple[dict[str, Any], list[RunRecord]]] = {}
    for run in [r for r in runs if r.evaluated] + [r for r in runs if not r.evaluated]:
        key = (run.device, _key(run.protocol))
        if not run.evaluated:
            same = [k for k, (p, _) in buckets.items() if k[0] == run.device and _training(p) == run.protocol]
            key = same[0] if len(same) == 1 else key
        buckets.setdefault(key, (run.protocol, []))[1].append(run)
    return buckets


def group_runs(
    runs: list[RunRecord],
    fid_target: float = DEFAULT_FID_TARGET,
    *,
    allow_mixed: bool = False,
    require_single_protocol: bool = False,
    by_hparams: bool = False,
) -> list[Group]:
    """Group runs by device and protocol, one row per architecture (and per hparams point with ``by_hparams``).

    Runs whose protocols differ land in separate groups; ``allow_mixed`` puts each device's
    runs in one group and records the differing settings in ``Group.mixed``;
    ``require_single_protocol`` refuses runs of more than one protocol.

    Raises:
        UsageError: ``require_single_protocol`` and the runs' protocols differ, or both
            ``allow_mixed`` and ``require_single_protocol`` are set.
    """
    if allow_mixed and require_single_protocol:
        raise UsageError("--allow-mixed and --strict contradict each other; choose one")
    buckets = _buckets(runs)
    if require_single_protocol:
        diff = _differences([p for p, _ in buckets.values()])
        if diff:
            raise UsageError(
                f"the runs differ in protocol ({tables.differences_text(diff)}); "
                "report runs of one protocol, or pass --allow-mixed to put them in one table"
            )
    if allow_mixed:
        by_device: dict[str, list[RunRecord]] = {}
        for run in runs:
            by_device.setdefault(run.device, []).append(run)
        parts = []
        for device, members in by_device.items():
            protocols = [r.protocol for r in members]
            mixed = _differences(protocols)
            common: dict[str, Any] = {}
            for protocol in protocols:  # eval.* come from the evaluated runs
                for k, v in protocol.items():
                    if k not in mixed:
                        common.setdefault(k, v)
            parts.append((device, common, mixed, members))
    else:
        parts = [(device, protocol, {}, members) for (device, _), (protocol, members) in buckets.items()]

    groups = []
    for device, protocol, mixed, members in sorted(parts, key=lambda p: (p[0], _key(p[1]))):
        members = sorted(members, key=lambda r: str(r.path))
        rows: dict[tuple[str, str], list[RunRecord]] = {}
        for run in members:
            rows.setdefault((run.arch, _key(run.hparams) if by_hparams else ""), []).append(run)
        group = Group(
            device=device,
            protocol=protocol,
            rows=[aggregate(arch, rs, fid_target, rs[0].hparams if by_hparams else None)
                  for (arch, _), rs in sorted(rows.items())],
            fid_target=fid_target,
            mixed=mixed,
            references=_first(r.record.get("references") for r in members),
            by_hparams=by_hparams,
        )
        _mark_best(group)
        groups.append(group)
    return groups


def _fid(row: Row) -> float:
    fid = row.metrics["fid"].mean
    return math.inf if fid is None else fid


def _mark_best(group: Group) -> None:
    for row in group.rows:
        row.best = False
    scored = [row for row in group.rows if row.metrics["fid"].mean is not None]
    if scored:
        min(scored, key=_fid).best = True


def best_per_arch(groups: list[Group]) -> list[Group]:
    """Keep, per group and architecture, the hyperparameter point with the lowest mean FID.

    Meant for groups made with ``group_runs(..., by_hparams=True)``; a row without FID loses to any with one.
    """
    out = []
    for group in groups:
        best: dict[str, Row] = {}
        for row in group.rows:
            if row.arch not in best or _fid(row) < _fid(best[row.arch]):
                best[row.arch] = row
        kept = replace(group, rows=[replace(best[arch]) for arch in sorted(best)])
        _mark_best(kept)
        out.append(kept)
    return out


def protocol_note(groups: list[Group]) -> str | None:
    """A note for the user when the runs were split into several tables, or one table mixes protocols."""
    notes = []
    devices = sorted({g.device for g in groups})
    if len(devices) > 1:
        notes.append(f"the runs come from {len(devices)} devices ({', '.join(devices)}); one table per device")
    split = [g for g in groups if sum(h.device == g.device for h in groups) > 1]  # several tables on one device
    diff = _differences([g.protocol for g in split])
    if diff:
        notes.append(
            f"the runs differ in protocol ({tables.differences_text(diff)}); shown as separate tables "
            "(--allow-mixed puts them in one, --strict refuses)"
        )
    mixed = [g for g in groups if g.mixed]
    if mixed:
        notes.append(f"{len(mixed)} table(s) mix protocols (--allow-mixed): {tables.differences_text(mixed[0].mixed)}")
    return "; ".join(notes) or None


# Rendering ----------------------------------------------------------------------------------


def _stat_dict(stat: Stat) -> dict[str, Any]:
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
        **{m: _stat_dict(row.metrics[m]) for m in METRICS},
        "time_to_quality": {"fid_target": t.target, "reached": t.reached, "runs": t.runs, "step": t.step, "wall_s": t.wall_s},
        "best_fid": row.best,
    }


def group_dict(group: Group) -> dict[str, Any]:
    """A group as plain data (one element of the JSON output)."""
    return {
        "device": group.device,
        "protocol": group.protocol,
        "mixed": group.mixed,
        "fid_target": group.fid_target,
        "references": group.references,
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


def _render_json(groups: list[Group]) -> str:
    return json.dumps(_plain([group_dict(g) for g in groups]), indent=2, allow_nan=False) + "\n"


CSV_COLUMNS = (
    "group", "device", "budget", "batch_size", "train_subset", "precision", "eval_protocol", "mixed",
    "arch", "hparams", "runs", "seeds", "status", "params_g", "params_d", "flops_per_step", "step_ms_median",
    "images_per_s", "wall_s", *[f"{m}_{s}" for m in METRICS for s in ("mean", "std", "n")],
    "fid_target", "ttq_reached", "ttq_runs", "ttq_step", "ttq_wall_s", "best_fid",
)


def _render_csv(groups: list[Group]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for index, group in enumerate(groups, 1):
        p = group.protocol
        evaluation = {k[5:]: v for k, v in p.items() if k.startswith("eval.")}
        for row in group.rows:
            d = row_dict(row)
            t = d["time_to_quality"]
            values = {
                "group": index, "device": group.device, "budget": p.get("budget"), "batch_size": p.get("batch_size"),
                "train_subset": p.get("train_subset"), "precision": p.get("precision"),
                "eval_protocol": json.dumps(evaluation, sort_keys=True) if evaluation else None,
                "mixed": json.dumps(group.mixed, default=str) if group.mixed else None,
                "hparams": json.dumps(row.hparams, sort_keys=True) if row.hparams is not None else None,
                "seeds": " ".join(map(str, row.seeds)),
                "status": "; ".join(f"{n} {s}" for s, n in row.status.items()),
                **{f"{m}_{s}": d[m][s] for m in METRICS for s in ("mean", "std", "n")},
                "fid_target": t["fid_target"], "ttq_reached": t["reached"], "ttq_runs": t["runs"],
                "ttq_step": t["step"], "ttq_wall_s": t["wall_s"],
                **{k: d[k] for k in ("arch", "runs", "params_g", "params_d", "flops_per_step", "step_ms_median",
                                     "images_per_s", "wall_s", "best_fid")},
            }
            writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])
    return buf.getvalue()


_FIGURE_CAPTIONS = {
    "losses": "Generator and discriminator losses (mean over seeds)",
    "fid-vs-time": "FID against training time",
    "fid-vs-batches": "FID against training batches",
    "samples": "Final samples (seed 0 of each architecture)",
}


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _provenance(groups: list[Group], command: str | None) -> list[str]:
    """The commands that made these runs (from their comparison plans) and this report."""
    from bench.compare import command_line
    from bench.sweep import command_line as sweep_command_line

    commands = []
    for folder in sorted({run.path.parent for group in groups for run in group.runs}):
        data = _plan_of(folder)
        if data is not None:
            try:
                commands.append((sweep_command_line if data.get("kind") == "sweep" else command_line)(data))
            except (KeyError, TypeError, AttributeError):
                continue  # a damaged plan only costs the provenance line
    if command:
        commands.append(command)
    return commands


def _render_md(groups: list[Group], figures: Sequence[str] = (), command: str | None = None, intro: str | None = None) -> str:
    runs = sum(len(g.runs) for g in groups)
    lines = ["# GAN architectures on MNIST", ""] + ([intro, ""] if intro else []) + [
             f"{runs} run(s) in {len(groups)} table(s), one per device and protocol; rows aggregate seeds.", ""]
    for index, group in enumerate(groups, 1):
        columns = tables.comparison_columns(group)
        lines += [f"## {tables.comparison_title(index, group)}", ""]
        lines.append("| " + " | ".join(_md_cell(h) for _, h, _ in columns) + " |")
        lines.append("| " + " | ".join("---:" if numeric else "---" for _, _, numeric in columns) + " |")
        for row in group.rows:
            cells = [f"**{_md_cell(t)}**" if best else _md_cell(t) for t, best in tables.comparison_cells(group, row)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += [f"- {note}" for note in tables.comparison_notes(group)]
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for name in figures:
            kind = next((k for k in _FIGURE_CAPTIONS if name.endswith(f"-{k}.png")), "")
            lines += [f"![{_FIGURE_CAPTIONS.get(kind, name)}]({name})", ""]
    commands = _provenance(groups, command)
    if commands:
        lines += ["## How this was made", "", "Generated by gan-bench; do not edit by hand. To reproduce:", "", "```sh",
                  *commands, "```", ""]
    return "\n".join(lines)


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "±": r"$\pm$", "·": r"$\cdot$", "×": r"$\times$", "³": r"$^3$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in ``text``."""
    return "".join(_LATEX_ESCAPES.get(c, c) for c in text)


def _render_latex(groups: list[Group]) -> str:
    out = ["% Generated by gan-bench report; needs \\usepackage{booktabs}.", ""]
    for index, group in enumerate(groups, 1):
        columns = tables.comparison_columns(group)
        out.append(f"\\noindent\\textbf{{{latex_escape(tables.comparison_title(index, group))}}}\\par\\smallskip")
        out.append("\\begin{tabular}{" + "".join("r" if numeric else "l" for _, _, numeric in columns) + "}")
        out.append("\\toprule")
        out.append(" & ".join(latex_escape(h) for _, h, _ in columns) + " \\\\")
        out.append("\\midrule")
        for row in group.rows:
            cells = [f"\\textbf{{{latex_escape(t)}}}" if best else latex_escape(t)
                     for t, best in tables.comparison_cells(group, row)]
            out.append(" & ".join(cells) + " \\\\")
        out.append("\\bottomrule")
        out.append("\\end{tabular}\\par\\smallskip")
        out += [f"{latex_escape(note)}\\par" for note in tables.comparison_notes(group)]
        out.append("")
    return "\n".join(out)


def render(groups: list[Group], fmt: str, figures: Sequence[str] = (), command: str | None = None,
           intro: str | None = None) -> str:
    """Render the groups as ``md``, ``csv``, ``json`` or ``latex`` text.

    ``figures`` (paths relative to the output file) are linked from Markdown, which also
    lists the commands that made the runs and, given ``command``, the report itself.
    """
    if fmt == "md":
        return _render_md(groups, figures, command, intro)
    if fmt == "csv":
        return _render_csv(groups)
    if fmt == "json":
        return _render_json(groups)
    if fmt == "latex":
        return _render_latex(groups)
    raise UsageError(f"unknown report format {fmt!r}; choose from: {', '.join(FORMATS)}")


# Figures ------------------------------------------------------------------------------------


def _read_losses(run: RunRecord) -> dict[int, tuple[float, float]]:
    """losses.csv as ``{step: (D loss, G loss)}``; empty when the file is missing or unreadable."""
    curve = {}
    try:
        with open(run.path / "losses.csv", newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                try:
                    curve[int(row["step"])] = (float(row.get("loss/D") or "nan"), float(row.get("loss/G") or "nan"))
                except (KeyError, TypeError, ValueError):
                    continue
    except OSError:
        return {}
    return curve


def _mean_curve(curves: list[dict[int, tuple[float, ...]]]) -> tuple[list[int], list[tuple[float, ...]]]:
    """Mean over runs at the steps every run has (time budgets stop runs at different steps)."""
    curves = [c for c in curves if c]
    if not curves:
        return [], []
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    means = [tuple(statistics.fmean(c[s][i] for c in curves) for i in range(len(curves[0][s]))) for s in steps]
    return steps, means


def _fid_curve(run: RunRecord) -> dict[int, tuple[float, float]]:
    return {
        int(e["step"]): (float(e["train_wall_s"]) if _finite(e.get("train_wall_s")) else math.nan, float(e["fid"]))
        for e in run.evaluations if _finite(e.get("step")) and _finite(e.get("fid"))
    }


def _save_figure(fig: Any, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def _labelled_rows(groups: list[Group]) -> list[tuple[str, Group, Row]]:
    out = []
    for index, group in enumerate(groups, 1):
        for row in group.rows:
            label = row.arch
            if group.by_hparams and row.hparams:
                label += f" ({tables.hparams_text(group, row)})"
            out.append((f"{label} [{index}]" if len(groups) > 1 else label, group, row))
    return out


def write_figures(groups: list[Group], out: str | os.PathLike) -> list[Path]:
    """Write ``<stem>-losses.png``, ``-fid-vs-time.png``, ``-fid-vs-batches.png`` and ``-samples.png`` beside ``out``.

    A figure without data to draw (no losses.csv, no evaluations, no samples.png) is left out.
    """
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    out = Path(out)
    base = out.parent / out.stem
    rows = _labelled_rows(groups)
    color = {label: f"C{i % 10}" for i, (label, _, _) in enumerate(rows)}  # one colour per row in every figure
    written = []

    fig = Figure(figsize=(11, 4))
    ax_d, ax_g = fig.subplots(1, 2, sharex=True)
    drawn = False
    for label, _, row in rows:
        steps, means = _mean_curve([_read_losses(r) for r in row.runs])
        if steps:
            ax_d.plot(steps, [m[0] for m in means], label=label, color=color[label])
            ax_g.plot(steps, [m[1] for m in means], label=label, color=color[label])
            drawn = True
    if drawn:
        for ax, name in ((ax_d, "D loss"), (ax_g, "G loss")):
            ax.set_xlabel("batches")
            ax.set_ylabel(name)
            ax.set_title(f"{name} (mean over seeds)")
            ax.grid(alpha=0.3)
        ax_g.legend(fontsize=8)
        written.append(_save_figure(fig, Path(f"{base}-losses.png")))

    # One line per run: seeds under a time budget evaluate at different steps, so a mean
    # over seeds would keep only the final point. Seeds of one architecture share a colour.
    curves = [(label, [c for c in (_fid_curve(r) for r in row.runs) if c]) for label, _, row in rows]
    curves = [(label, runs) for label, runs in curves if runs]
    if curves:
        for suffix, x_label in (("time", "training wall-clock time (s)"), ("batches", "batches")):
            fig = Figure(figsize=(7, 4.5))
            ax = fig.subplots()
            for label, runs in curves:
                for i, curve in enumerate(runs):
                    steps = sorted(curve)
                    xs = [curve[st][0] for st in steps] if suffix == "time" else steps
                    pts = [(x, curve[st][1]) for x, st in zip(xs, steps) if curve[st][1] > 0 and math.isfinite(x)]
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, linewidth=1.2,
                            alpha=0.85, label=label if i == 0 else None, color=color[label])
            ax.axhline(groups[0].fid_target, color="gray", linestyle="--", linewidth=1,
                       label=f"target FID {console.fmt(float(groups[0].fid_target))}")
            ref = ((groups[0].references or {}).get("train_vs_test") or {}).get("fid") if len(groups) == 1 else None
            if _finite(ref) and ref > 0:
                ax.axhline(ref, color="green", linestyle=":", linewidth=1, label="train vs test")
            ax.set_yscale("log")
            ax.set_xlabel(x_label)
            ax.set_ylabel("FID (MNIST classifier features)")
            ax.set_title(f"FID against {'training time' if suffix == 'time' else 'batches'} (one line per seed)")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
            written.append(_save_figure(fig, Path(f"{base}-fid-vs-{suffix}.png")))

    samples = []
    for label, _, row in rows:
        run = min(row.runs, key=lambda r: (r.seed != 0, r.seed, str(r.path)))
        try:
            samples.append((f"{label} (seed {run.seed})", imread(run.path / "samples.png", format="png")))
        except (OSError, ValueError, SyntaxError):  # missing or unreadable: that panel is left out
            continue
    if samples:
        fig = Figure(figsize=(2.4 * len(samples), 2.8))
        axes = fig.subplots(1, len(samples), squeeze=False)[0]
        for ax, (label, image) in zip(axes, samples):
            ax.imshow(image, cmap="gray")
            ax.set_title(label, fontsize=9)
            ax.axis("off")
        written.append(_save_figure(fig, Path(f"{base}-samples.png")))
    return written


# Writing and the command line ---------------------------------------------------------------


@dataclass
class Report:
    """What ``write_report`` produced."""

    groups: list[Group]
    out: Path | None
    figures: list[Path]


def write_report(
    paths: Sequence[str | os.PathLike],
    fmt: str = "md",
    out: str | os.PathLike | None = None,
    fid_target: float = DEFAULT_FID_TARGET,
    allow_mixed: bool = False,
    figures: bool = True,
    *,
    strict: bool = False,
    command: str | None = None,
    intro: str | None = None,
    by_hparams: bool | None = None,
    best: bool = False,
) -> Report:
    """Load, group and render the runs in ``paths``; write the table atomically to ``out`` (stdout if None).

    Figures are written beside ``out`` when ``figures`` is on and ``out`` is given. ``by_hparams``
    gives each hyperparameter point its own row (None: only when a path is a sweep folder);
    ``best`` keeps the point with the lowest mean FID per architecture.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown report format {fmt!r}; choose from: {', '.join(FORMATS)}")
    if not (_finite(fid_target) and fid_target > 0):
        raise UsageError(f"--fid-target must be a positive number, got {fid_target}")
    if by_hparams is None:
        by_hparams = best or any(_is_sweep(Path(p)) for p in paths)
    elif best and not by_hparams:
        raise UsageError("--best picks one hyperparameter point per architecture; drop --no-by-hparams")
    groups = group_runs(load_runs(paths), fid_target, allow_mixed=allow_mixed, require_single_protocol=strict,
                        by_hparams=by_hparams)
    if best:
        groups = best_per_arch(groups)
    if out is None:
        console.out.file.write(render(groups, fmt))  # verbatim: the text may be piped into a parser
        console.out.file.flush()
        return Report(groups, None, [])
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name, e.g. {out / ('report.' + _SUFFIX[fmt])}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create {out.parent} ({exc.strerror or exc})") from None
    drawn = write_figures(groups, out) if figures else []
    write_text(out, render(groups, fmt, [p.name for p in drawn], command, intro))
    return Report(groups, out, drawn)


_SUFFIX = {"md": "md", "csv": "csv", "json": "json", "latex": "tex"}


def _plan_of(folder: Path) -> dict[str, Any] | None:
    from bench.compare import PLAN

    try:
        plan = json.loads((folder / PLAN).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) else None


def _is_sweep(path: Path) -> bool:
    """Whether ``path`` is a sweep folder (``bench sweep``'s plan), whose rows are hyperparameter points."""
    plan = _plan_of(path) if path.is_dir() else None
    return bool(plan and plan.get("kind") == "sweep")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def cmd_report(args: argparse.Namespace) -> int:
    """``bench report``: write the table (and figures); show it in the terminal when it went to a file."""
    command = "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["report"] else None
    report = write_report(args.paths, args.format, args.out, args.fid_target, args.allow_mixed, args.figures,
                          strict=args.strict, command=command, intro=args.intro, by_hparams=args.by_hparams, best=args.best)
    note = protocol_note(report.groups)
    if note:
        console.err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    if report.out is not None:
        tables.print_comparison(report.groups)
        console.out.print(f"report: {report.out}", markup=False, soft_wrap=True)
        for path in report.figures:
            console.out.print(f"figure: {path}", markup=False, soft_wrap=True)
    return 0


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``report`` on the CLI's subparsers and return its parser."""
    p = subparsers.add_parser(
        "report", help="compare finished runs and publish the table",
        description="Compare finished runs: one table per device and protocol, one row per architecture, "
                    "seeds aggregated.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="run folders, or folders holding run folders (searched recursively)")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.add_argument("--out", metavar="FILE",
                   help="write the table here, figures beside it (default: print the table to stdout, no figures)")
    p.add_argument("--fid-target", type=_positive_float, default=DEFAULT_FID_TARGET, metavar="FID",
                   help=f"FID a run must fall below to count as reaching quality (default {DEFAULT_FID_TARGET:g})")
    mixing = p.add_mutually_exclusive_group()
    mixing.add_argument("--allow-mixed", action="store_true",
                        help="put runs of different protocols in one table per device (the table says so)")
    mixing.add_argument("--strict", action="store_true", help="refuse runs of more than one protocol")
    p.add_argument("--no-figures", dest="figures", action="store_false", help="write no figures")
    p.add_argument("--intro", metavar="TEXT", help="a paragraph for the top of a Markdown report (what was run, and why)")
    p.add_argument("--by-hparams", action=argparse.BooleanOptionalAction, default=None,
                   help="one row per architecture and hyperparameter point (default: on for a sweep folder)")
    p.add_argument("--best", action="store_true",
                   help="keep only the hyperparameter point with the lowest mean FID over seeds, per architecture")
    p.set_defaults(func=cmd_report)
    return p
