"""The suite's rich tables: a run's summary, its metrics, the registered architectures, and the
comparison tables, whose columns, cells and notes ``bench report`` also renders to files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from bench import console
from bench.console import fmt
from bench.record import Metrics, RunRecord
from bench.report.aggregate import (
    FlatProtocol, Group, Row, TimeToQuality, differences_text, evaluation_settings, setting_text,
)
from bench.stats import Stats

if TYPE_CHECKING:  # for annotations only: listing architectures needs no torch here
    from bench.registry import Loaded


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def print_run(record: RunRecord, run_dir: Path | None) -> None:
    """Print the end-of-run summary of one run record."""
    t = record.timing
    status = str(record.status)
    if record.diverged_at_step is not None:
        status += f" (non-finite values at step {record.diverged_at_step})"
    rows = [
        ("status", status),
        ("steps", record.steps),
        ("images seen", record.images_seen),
        ("wall time", f"{t.wall_s:.1f} s"),
        ("step time median", f"{fmt(t.step_ms_median)} ms"),
        ("step time p10 / p90", f"{fmt(t.step_ms_p10)} / {fmt(t.step_ms_p90)} ms"),
        ("warm-up steps (left out)", t.warmup_steps),
        ("images / s", f"{t.images_per_s:,.0f}"),
        ("FLOPs per step", record.flops_per_step),
        ("precision", record.config.precision),
        ("peak memory", _mib(record.peak_memory_bytes)),
        ("final D loss", record.losses.d),
        ("final G loss", record.losses.g),
        ("D(x), mean of last interval", record.discriminator.d_real),
        ("D(G(z)), mean of last interval", record.discriminator.d_fake),
        ("parameters G / D", f"{record.params.get('generator', 0):,} / {record.params.get('discriminator', 0):,}"),
        ("device", f"{record.env.device} ({record.env.device_name})"),
    ]
    console.out.print(console.key_value_table(f"{record.arch}: run summary", rows))
    if record.metrics is not None:
        print_metrics(record.metrics, record.references, f"{record.arch}: quality at step {record.steps}")
    if run_dir is not None:
        console.out.print(f"results: {run_dir}")


METRIC_LABELS = {
    "fid": "FID (MNIST classifier features)",
    "kid": "KID (MNIST classifier features)",
    "precision": "precision (k=3)",
    "recall": "recall (k=3)",
    "classifier_score": "classifier score (max 10)",
    "modes_covered": "digits covered (>= 1%)",
    "mode_kl": "KL(digit shares || uniform)",
}


def metrics_table(metrics: Metrics, references: dict[str, Metrics] | None, title: str,
                  column: str = "this run", noun: str = "generated") -> Table:
    """Metrics beside the reference points (train vs test, noise vs test).

    ``column`` heads the metrics' column; ``noun`` says what was scored in the caption.
    """
    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column(column, justify="right")
    refs = references or {}
    for name in refs:
        table.add_column(name.replace("_", " "), justify="right", style="dim")
    for key, label in METRIC_LABELS.items():
        value = metrics.value(key)
        shown = f"{fmt(value)} ± {fmt(metrics.kid_std)}" if key == "kid" and metrics.kid_std is not None else fmt(value)
        table.add_row(label, shown, *[fmt(r.value(key)) for r in refs.values()])
    if metrics.eval_s is not None:
        table.caption = (f"{metrics.protocol.get('n_generated', '?')} {noun} vs MNIST test; "
                         f"evaluation took {metrics.eval_s:.1f} s")
    return table


def print_metrics(metrics: Metrics, references: dict[str, Metrics] | None, title: str,
                  column: str = "this run", noun: str = "generated") -> None:
    """Print metrics beside the reference points."""
    console.out.print(metrics_table(metrics, references, title, column, noun))


def print_architectures(rows: list[Loaded]) -> None:
    """Print the registered architectures, with the load error of any that failed and any name clash."""
    table = Table(title="Registered architectures", title_justify="left")
    for col in ("name", "package", "image", "description"):
        table.add_column(col, overflow="fold")
    for entry, spec, error in rows:
        if entry.clashes:  # unusable until one of its packages is uninstalled
            table.add_row(entry.name, ", ".join(sorted({entry.package, *entry.clashes})), "-", f"[red]{error}[/]")
        elif spec is None:
            table.add_row(entry.name, entry.package, "-", f"[red]failed to load: {error}[/]")
        else:
            table.add_row(entry.name, f"{entry.package} {entry.version}", f"{spec.image_size}x{spec.image_size}",
                          spec.description)
    console.out.print(table)


# Comparison tables: shared by `bench report` (Markdown, LaTeX) and the terminal ----------

_REFERENCES = (("train_vs_test", "train vs test"), ("noise_vs_test", "noise vs test"))
#: Evaluation settings named in table headings (the digest covers all of them).
_EVAL_HEADLINE = ("n_generated", "eval_seed", "feature_network_sha256", "feature_network.sha256")


def describe_protocol(protocol: FlatProtocol) -> str:
    """Describe a flat protocol in one line: ``600 steps · batch 64 · all training images · fp32 · evaluation ...``."""
    parts = []
    if "budget" in protocol:
        parts.append(str(protocol["budget"]))
    if "batch_size" in protocol:
        parts.append(f"batch {setting_text('batch_size', protocol['batch_size'])}")
    if "train_subset" in protocol:
        subset = protocol["train_subset"]
        parts.append("all training images" if subset is None else f"train subset {fmt(subset)}")
    if "precision" in protocol:
        parts.append(str(protocol["precision"]))
    evaluation = evaluation_settings(protocol)
    if evaluation:
        # The whole evaluation protocol is long; name it by a digest and show the settings people vary.
        digest = hashlib.sha256(json.dumps(evaluation, sort_keys=True, default=str).encode()).hexdigest()[:8]
        shown = [f"{k}={setting_text(k, evaluation[k])}" for k in _EVAL_HEADLINE if k in evaluation]
        parts.append(f"evaluation {digest}" + (f" ({', '.join(shown)})" if shown else ""))
    else:
        parts.append("no evaluation protocol")
    return " · ".join(parts)


def comparison_title(index: int, group: Group) -> str:
    """The heading of one comparison table: its number, device and protocol."""
    return f"{index}. {group.device} · {describe_protocol(group.protocol)}"


#: Columns the terminal leaves out to fit a screen (the report files keep them).
TERSE_OMITS = frozenset({"params", "flops", "classifier_score", "ttq_s", "ttq_batches"})


def comparison_columns(group: Group, terse: bool = False) -> list[tuple[str, str, bool]]:
    """The columns of a comparison table as ``(key, header, numeric)``."""
    target = fmt(float(group.fid_target))
    cols = [("arch", "arch", False)]
    if group.by_hparams:
        cols.append(("hparams", "hparams", False))
    cols += [
        ("runs", "runs", True), ("status", "status", False), ("params", "params G/D (M)", True),
        ("flops", "GFLOP/step", True), ("step_ms", "step ms", True), ("images_per_s", "img/s", True),
        ("wall_s", "wall s", True), ("fid", "FID", True), ("kid", "KID×10³", True), ("precision", "prec.", True),
        ("recall", "recall", True), ("modes", "modes", True), ("classifier_score", "class. score", True),
        ("ttq_s", f"s to FID<{target}", True), ("ttq_batches", f"batches to FID<{target}", True),
    ]
    if not terse:
        return cols
    return [c for c in cols if c[0] not in TERSE_OMITS] + [("ttq", f"to FID<{target}", True)]


def mean_pm_std(stat: Stats, scale: float = 1.0) -> str:
    """``mean ± std`` of ``stat`` times ``scale`` (``-`` for a missing value or a single seed's std)."""
    if stat.mean is None:
        return "-"
    return f"{fmt(stat.mean * scale)} ± {fmt(stat.std * scale, 2) if stat.std is not None else '-'}"


def mean_text(stat: Stats) -> str:
    """The mean of ``stat``, or ``-``."""
    return "-" if stat.mean is None else fmt(stat.mean)


def millions(n: int | None) -> str:
    """``n`` in millions to three significant digits, or ``-``."""
    return "-" if n is None else f"{n / 1e6:.3g}"


def hparams_text(group: Group, row: Row) -> str:
    """The row's hyperparameters that differ between the rows of its architecture, as ``k=v, ...``."""
    rows = [r for r in group.rows if r.arch == row.arch]
    keys = sorted({k for r in rows for k in (r.hparams or {})})
    varying = [k for k in keys if len({repr((r.hparams or {}).get(k)) for r in rows}) > 1]
    return ", ".join(f"{k}={fmt((row.hparams or {}).get(k))}" for k in varying) or "-"


def time_to_quality_texts(ttq: TimeToQuality) -> tuple[str, str, str]:
    """Time to quality as ``(seconds, batches, both)`` cell texts."""
    if ttq.runs == 0:
        return "-", "-", "-"
    if ttq.reached == 0:
        return "not reached", "not reached", "not reached"
    partial = f" ({ttq.reached}/{ttq.runs} reached)" if ttq.reached < ttq.runs else ""
    return (f"{fmt(ttq.wall_s)}{partial}", f"{fmt(ttq.step)}{partial}",
            f"{fmt(ttq.wall_s)} s / {fmt(ttq.step)} batches{partial}")


def comparison_cells(group: Group, row: Row, terse: bool = False) -> list[tuple[str, bool]]:
    """The cells of one row as ``(text, highlighted)``, matching ``comparison_columns``; the best FID is highlighted."""
    when, batches, both = time_to_quality_texts(row.ttq)
    m = row.metrics
    text = {
        "arch": row.arch,
        "hparams": hparams_text(group, row) if group.by_hparams else "",
        "runs": fmt(len(row.runs)),
        "status": ", ".join(f"{n} {s}" for s, n in row.status.items()),
        "params": f"{millions(row.params_g)} / {millions(row.params_d)}",
        "flops": "-" if row.flops_per_step is None else fmt(row.flops_per_step / 1e9),
        "step_ms": fmt(row.step_ms_median),
        "images_per_s": mean_text(row.images_per_s),
        "wall_s": mean_text(row.wall_s),
        "fid": mean_pm_std(m["fid"]),
        "kid": mean_pm_std(m["kid"], 1e3),  # KID is small; shown in thousandths, as is usual
        "precision": mean_text(m["precision"]),
        "recall": mean_text(m["recall"]),
        "modes": mean_text(m["modes_covered"]),
        "classifier_score": mean_text(m["classifier_score"]),
        "ttq_s": when,
        "ttq_batches": batches,
        "ttq": both,
    }
    return [(text[key], key == "fid" and row.best) for key, _, _ in comparison_columns(group, terse)]


def reference_text(label: str, ref: Metrics) -> str:
    """One reference point's scores, e.g. ``reference train vs test: FID 2.5, KID×10³ 0.1, ...``."""
    kid = ref.kid * 1e3 if ref.kid is not None else None
    parts = [f"FID {fmt(ref.fid)}", f"KID×10³ {fmt(kid)}"]
    parts += [f"{name} {fmt(ref.value(k))}" for k, name in (
        ("precision", "precision"), ("recall", "recall"), ("modes_covered", "modes"),
        ("classifier_score", "classifier score"))]
    return f"reference {label}: {', '.join(parts)}"


def comparison_notes(group: Group) -> list[str]:
    """The lines printed under a comparison table: mixed settings, reference points, legend."""
    notes = []
    if group.mixed:
        notes.append(f"mixed protocols in this table (--allow-mixed): {differences_text(group.mixed)}")
    for key, label in _REFERENCES:
        ref = (group.references or {}).get(key)
        if ref is not None:
            notes.append(reference_text(label, ref))
    notes.append(
        f"FID and KID: mean ± sample std over seeds, on MNIST-classifier features; best FID highlighted. "
        f"Time to quality: training seconds and batches until FID first fell below {fmt(float(group.fid_target))} "
        f"(median over the seeds that reached it)."
    )
    return notes


def print_comparison(groups: list[Group]) -> None:
    """Print one comparison table per group, best FID in bold, reference points under it."""
    from rich import box
    from rich.text import Text

    for index, group in enumerate(groups, 1):
        table = Table(title=Text(comparison_title(index, group)), title_justify="left", box=box.SIMPLE_HEAD,
                      pad_edge=False)
        columns = comparison_columns(group, terse=True)
        for key, header, numeric in columns:  # names, statuses and the scores stay whole
            table.add_column(header, justify="right" if numeric else "left", overflow="fold",
                             no_wrap=key in ("arch", "status", "fid", "kid"))
        status = [key for key, _, _ in columns].index("status")
        for row in group.rows:
            cells = [Text(text, style="bold" if best else "")
                     for text, best in comparison_cells(group, row, terse=True)]
            if row.diverged:
                cells[status].stylize("red")
            table.add_row(*cells)
        console.out.print(table)
        for line in comparison_notes(group):
            console.out.print(Text(line), soft_wrap=True)
        console.out.print()


# A plan's live table (bench sweep on Ray) ------------------------------------------------------

_PLAN_COLUMNS = (("#", "right"), ("run", "left"), ("status", "left"), ("attempt", "right"), ("time", "right"),
                 ("where", "left"))


def plan_table(title: str, rows: list[tuple[tuple[str, ...], str | None]], hidden: int = 0) -> Table:
    """Where a plan's runs stand: one row of cells (and a style) per shown run."""
    table = Table(title=title, title_justify="left")
    for name, justify in _PLAN_COLUMNS:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for cells, style in rows:
        table.add_row(*cells, style=style)
    if hidden:
        table.caption = f"{hidden} more not shown"
    return table


# Perf: the study's loop against the runner (`bench perf`) ------------------------------------

_PERF_COLUMNS = ("contender", "precision", "batches/s", "min-max", "vs study", "min-max ", "GFLOP/step", "GFLOP/s",
                "of peak", "vs bare loop")


def _perf_title(record: dict[str, Any]) -> str:
    """Return the perf table's title: architecture, batch size, machine and rounds."""
    graphs = " with CUDA graphs" if record.get("cuda_graphs") else ""
    return (f"{record['arch']}: batches of {record['batch_size']} on {record['env']['device_name']}{graphs}, "
            f"{record['rounds']} rounds x {record['batches_per_round']} batches (+{record['warmup_batches']} warm-up)")


def _perf_caption(record: dict[str, Any], peak_size: int) -> str:
    """Return the perf table's caption: the runner's overhead, the matmul peaks and the machine."""
    peaks = ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in record["matmul_peak_gflops"].items())
    over = "; ".join(
        f"{p} {o['vs_bare_loop']['median']:+.1%} ({o['vs_bare_loop']['min']:+.1%} to {o['vs_bare_loop']['max']:+.1%}), "
        f"of which outside its batch timer {o['outside_batch_timer']['median']:+.1%}"
        for p, o in record["runner_overhead"].items()
    )
    env, load = record["env"], record["load_average"]
    return (
        f"runner's time per batch vs the bare loop (median batch times, alternating): {over}\n"
        f"matmul peak ({peak_size}x{peak_size}, measured here): {peaks}; "
        f"{env['cpu_model']}, {env['torch_threads']} threads, torch {env['torch']}; "
        f"allocator (every contender): {env.get('allocator', 'default')}; "
        f"load average {load['before']:.1f} before, {load['after']:.1f} after"
    )


def perf_table(record: dict[str, Any]) -> Table:
    """Build the comparison table of one perf record, one row per contender."""
    from bench.perf.measure import CONTENDERS, PEAK_SIZE, Kind  # perf's own imports: only when one is drawn

    described = {c.key: c for c in CONTENDERS}
    table = Table(title=_perf_title(record), title_justify="left", caption=_perf_caption(record, PEAK_SIZE))
    for col in _PERF_COLUMNS:
        table.add_column(col, justify="left" if col == "contender" else "right",
                         style="bold" if col == "contender" else None)
    for key, c in record["contenders"].items():
        v, r = c["batches_per_s"], c["vs_study"]
        contender = described.get(key)
        runner = contender is not None and contender.kind is Kind.RUNNER
        over = record["runner_overhead"].get(c["precision"]) if runner else None
        table.add_row(
            key if contender is None else contender.label, c["precision"], f"{c['batches_per_s_median']:.1f}",
            f"{min(v):.1f}-{max(v):.1f}", f"{r['median']:.2f}x", f"{r['min']:.2f}-{r['max']:.2f}",
            "-" if c["flops_per_step"] is None else f"{c['flops_per_step'] / 1e9:.3f}",
            "-" if c["gflops_per_s"] is None else f"{c['gflops_per_s']:.1f}",
            "-" if c["share_of_peak"] is None else f"{c['share_of_peak']:.0%}",
            "-" if over is None else f"{over['vs_bare_loop']['median']:+.1%}",
        )
    return table


def print_perf(record: dict[str, Any]) -> None:
    """Print the comparison table of one perf record."""
    console.out.print(perf_table(record))
