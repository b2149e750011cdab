"""The suite's rich tables: a run's summary, its metrics, the registered architectures, a plan's runs
and ``bench perf``'s records; and the numbers of every table cell, the comparison's too
(:mod:`bench.report.cells`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from bench import console
from bench.console import fmt
from bench.record import Metrics, RunRecord
from bench.scores import METRICS

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
    spread_of = {m.spread_of: m.name for m in METRICS if m.spread_of}  # KID's std over its subsets
    for metric in (m for m in METRICS if m.headline):
        value = metrics.value(metric.name)
        spread = metrics.value(spread_of[metric.name]) if metric.name in spread_of else None
        shown = fmt(value) if spread is None else pm_text(value, spread)
        table.add_row(metric.label, shown, *[fmt(r.value(metric.name)) for r in refs.values()])
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


# Numbers in table cells ----------------------------------------------------------------------


def round_sig(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` significant digits."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def number(value: float | None, digits: int | None = None, default: int = 4) -> str:
    """A number for a table cell: ``digits`` significant digits with trailing zeros kept, so a column's numbers
    line up (``--digits``); None gives the compact form (:func:`bench.console.fmt`) to ``default`` digits.

    Neither writes a power of ten between 0.001 and 100,000: a spread of 780 reads "780", not "7.8e+02".
    """
    if value is None or not math.isfinite(value):
        return fmt(value)
    if digits is None:
        value = round_sig(float(value), default)
        whole = math.floor(math.log10(abs(value))) + 1 if value else 1
        return fmt(value, max(default, whole))  # enough digits for the whole part: fmt writes no exponent
    value = round_sig(float(value), digits)
    if value != 0 and not 1e-3 <= abs(value) < 1e6:
        return f"{value:.{digits - 1}e}"
    decimals = digits - 1 - (math.floor(math.log10(abs(value))) if value else 0)
    return f"{value:.{max(decimals, 0)}f}"


#: Significant digits of a spread: its first two, as is usual for an uncertainty.
SPREAD_DIGITS = 2


def last_place(value: float, digits: int) -> int:
    """The power of ten of the last of ``digits`` significant digits of ``value`` (0 for units)."""
    return math.floor(math.log10(abs(value))) - digits + 1 if value else 0


def at_place(value: float, place: int) -> str:
    """``value`` written to the power of ten ``place``: 1234.5 at 1 is "1230", at -1 "1234.5"."""
    return f"{round(value, -place):.0f}" if place >= 0 else f"{value:.{-place}f}"


def spread_place(mean: float, spread: float | None, digits: int | None = None) -> int | None:
    """The last place shown of a mean and its spread: the coarser of the mean's ``digits`` (default 4)
    significant digits and the spread's two, so that neither looks more precise than the other;
    None where a number is too large or small to write without a power of ten."""
    if not all(1e-3 <= abs(v) < 1e6 for v in (mean, spread) if v):
        return None
    place = last_place(mean, digits or 4)
    return max(place, last_place(spread, SPREAD_DIGITS)) if spread else place


def pm_text(mean: float, spread: float | None, digits: int | None = None) -> str:
    """``mean ± spread`` both to one place (:func:`spread_place`); a missing spread is ``-``, beside the mean
    to ``digits`` (:func:`number`)."""
    place = None if spread is None else spread_place(mean, spread, digits)
    if place is None:
        return f"{number(mean, digits)} ± {number(spread, digits, SPREAD_DIGITS) if spread is not None else '-'}"
    return f"{at_place(mean, place)} ± {at_place(spread, place)}"


def millions(n: int | None) -> str:
    """``n`` in millions to three significant digits, or ``-``."""
    return "-" if n is None else f"{n / 1e6:.3g}"


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
    console.out.print(seeds_perf_table(record) if record.get("kind") == "seeds" else perf_table(record))


_SEEDS_LABELS = {"stack": "one stack", "jobs": "--jobs parallel runs", "sequential": "one after another"}


def seeds_perf_table(record: dict[str, Any]) -> Table:
    """The table of a ``bench perf --seeds`` record: one row per way of training the seeds."""
    env, seeds = record["env"], record["seeds"]
    graphs = ", separate runs with CUDA graphs" if record.get("cuda_graphs") else ""
    title = (f"{record['arch']}: {len(seeds)} seeds on {env['device_name']}{graphs}, {record['rounds']} rounds x "
             f"{record['batches']} batches per seed (+{record['warmup']} warm-up), {record['precision']}")
    load = ", ".join(f"{k} {record[f'load_{k}']:.1f}" for k in ("start", "end") if record.get(f"load_{k}") is not None)
    caption = (f"seed-batches/s: seeds x timed batches over the contender's wall time (its slowest process); ratios "
               f"taken within each round; {env['cpu_model']}, torch {env['torch']}"
               + (f"; load average {load}" if load else ""))
    if record.get("stack_refused"):
        caption += f"\nnot stacked: {record['stack_refused']}"
    table = Table(title=title, title_justify="left", caption=caption)
    for col in ("contender", "processes x threads", "seed-batches/s", "min-max", "vs one after another", "min-max ",
                "peak memory"):
        table.add_column(col, justify="left" if col == "contender" else "right",
                         style="bold" if col == "contender" else None)
    for key, c in record["contenders"].items():
        v, r = c["seed_batches_per_s"], record["ratios"].get(f"{key}_vs_sequential")
        table.add_row(
            _SEEDS_LABELS.get(key, key), f"{c['processes']} x {c['threads_per_process']}", f"{v['median']:.1f}",
            f"{v['min']:.1f}-{v['max']:.1f}", "1.00x" if r is None else f"{r['median']:.2f}x",
            "-" if r is None else f"{r['min']:.2f}-{r['max']:.2f}", f"{c['peak_memory_bytes'] / 2**20:,.0f} MiB",
        )
    return table
