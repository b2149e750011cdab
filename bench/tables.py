"""The suite's rich tables: a run's summary, its metrics, the registered architectures, and the
comparison tables, whose columns, cells and notes ``bench report`` also renders to files."""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from bench import console
from bench.console import fmt
from bench.errors import UsageError
from bench.plans.steptimes import FILE as STEP_TIMES, ArchStepTimes
from bench.record import Contention, Metrics, RunRecord
from bench.report.aggregate import (
    SCALE, FlatProtocol, Group, Row, RowPair, TimeToQuality, differences_text, evaluation_settings, setting_text,
)
from bench.stats import ALPHA, MIN_INTERVAL_SEEDS, Stats, seeds_needed

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
        shown = pm_text(value, metrics.kid_std) if key == "kid" and metrics.kid_std is not None else fmt(value)
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
    scale = evaluation.get(SCALE)
    if scale is not None:
        parts.append(f"scored at {scale}x{scale}")
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


#: Columns the terminal leaves out to fit a screen (the report files keep them; ``--columns`` chooses).
TERSE_OMITS = frozenset({"params", "flops", "classifier_score", "ttq_s", "ttq_batches"})
#: The columns a terminal too narrow for the whole table shows first, together; the others follow in tables of
#: their own, each led by the architecture, so no number is ever broken across lines.
FIRST_COLUMNS = ("arch", "hparams", "runs", "fid", "fid_ci", "ttq")
#: Metric columns: the metric each shows and the factor it is shown at. Each has a ``<key>_ci`` column too.
_METRIC_COLUMNS = {"fid": ("fid", 1.0), "kid": ("kid", 1e3), "precision": ("precision", 1.0),
                   "recall": ("recall", 1.0), "modes": ("modes_covered", 1.0),
                   "classifier_score": ("classifier_score", 1.0)}
#: Columns whose cells are ``mean ± std``; the other metric columns show the mean.
PM_COLUMNS = frozenset({"fid", "kid"})
#: Metric columns that count (digits covered): a whole mean is written as a whole number.
COUNT_COLUMNS = frozenset({"modes"})
#: The mark of a row whose side-by-side step times vary widely, of a row with contended runs, and of
#: times taken while runs shared the machine (stacked seeds, --jobs).
WIDE_MARK, CONTENDED_MARK, SHARED_MARK = "†", "‡", "§"


def _all_columns(target: str) -> list[tuple[str, str, bool]]:
    """Every column a comparison table can show as ``(key, header, numeric)``, in the default order."""
    cols = [
        ("arch", "arch", False), ("hparams", "hparams", False), ("runs", "runs", True), ("status", "status", False),
        ("params", "params G/D (M)", True), ("flops", "GFLOP/step", True), ("step_ms", "step ms", True),
        ("images_per_s", "img/s", True), ("wall_s", "wall s", True), ("fid", "FID", True),
        ("fid_ci", "FID 95% CI", True), ("kid", "KID×10³", True), ("precision", "prec.", True),
        ("recall", "recall", True), ("modes", "modes", True), ("classifier_score", "class. score", True),
        ("ttq_s", f"s to FID<{target}", True), ("ttq_cpu_s", f"CPU s to FID<{target}", True),
        ("ttq_batches", f"batches to FID<{target}", True), ("ttq", f"to FID<{target}", True),
    ]
    headers = dict((k, h) for k, h, _ in cols)
    cols += [(f"{key}_ci", f"{headers[key]} 95% CI", True) for key in _METRIC_COLUMNS if key != "fid"]
    return cols


#: Every column key ``--columns`` accepts.
COLUMN_KEYS = tuple(key for key, _, _ in _all_columns("-"))


def check_columns(keys: Sequence[str]) -> tuple[str, ...]:
    """``keys`` as a tuple; an unknown or repeated key is a :class:`UsageError` naming the valid ones."""
    for key in keys:
        if key not in COLUMN_KEYS:
            close = difflib.get_close_matches(key, COLUMN_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"unknown column {key!r}{hint}; choose from: {', '.join(COLUMN_KEYS)}")
    repeated = sorted({k for k in keys if list(keys).count(k) > 1})
    if repeated:
        raise UsageError(f"column {repeated[0]!r} is named twice in --columns")
    if not keys:
        raise UsageError(f"--columns names no column; choose from: {', '.join(COLUMN_KEYS)}")
    return tuple(keys)


def comparison_columns(group: Group, terse: bool = False, columns: Sequence[str] | None = None,
                       ) -> list[tuple[str, str, bool]]:
    """The columns of a comparison table as ``(key, header, numeric)``: ``columns`` in their order, or the
    default set (``terse``: the terminal's)."""
    known = {c[0]: c for c in _all_columns(fmt(float(group.fid_target)))}
    if columns is not None:
        return [known[key] for key in columns]
    # By default, of the intervals only FID's: the others would double the table's width.
    keys = [k for k in known if k == "fid_ci" or not (k == "ttq" or k.endswith("_ci"))]
    if not group.by_hparams:
        keys.remove("hparams")
    if terse:
        keys = [k for k in keys if k not in TERSE_OMITS] + ["ttq"]
    return [known[key] for key in keys]


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


def mean_pm_std(stat: Stats, scale: float = 1.0, digits: int | None = None) -> str:
    """``mean ± std`` of ``stat`` times ``scale`` (``-`` for a missing value or a single seed's std)."""
    if stat.mean is None:
        return "-"
    return pm_text(stat.mean * scale, None if stat.std is None else stat.std * scale, digits)


def mean_text(stat: Stats, digits: int | None = None, count: bool = False) -> str:
    """The mean of ``stat``, or ``-``; a ``count`` whose mean is whole is written as a whole number."""
    if stat.mean is None:
        return "-"
    return f"{stat.mean:.0f}" if count and float(stat.mean).is_integer() else number(stat.mean, digits)


def ci_text(stat: Stats, scale: float = 1.0, digits: int | None = None) -> str:
    """``[low, high]``: the confidence interval of the mean of ``stat`` times ``scale``, to the place of its
    ``mean ± std`` (:func:`spread_place`), or ``-``."""
    if stat.ci_low is None or stat.ci_high is None or stat.mean is None:
        return "-"
    place = None if stat.std is None else spread_place(stat.mean * scale, stat.std * scale, digits)
    if place is None:
        return f"[{number(stat.ci_low * scale, digits)}, {number(stat.ci_high * scale, digits)}]"
    return f"[{at_place(stat.ci_low * scale, place)}, {at_place(stat.ci_high * scale, place)}]"


def millions(n: int | None) -> str:
    """``n`` in millions to three significant digits, or ``-``."""
    return "-" if n is None else f"{n / 1e6:.3g}"


def hparams_text(group: Group, row: Row) -> str:
    """The row's hyperparameters that differ between the rows of its architecture, as ``k=v, ...``."""
    rows = [r for r in group.rows if r.arch == row.arch]
    keys = sorted({k for r in rows for k in (r.hparams or {})})
    varying = [k for k in keys if len({repr((r.hparams or {}).get(k)) for r in rows}) > 1]
    return ", ".join(f"{k}={fmt((row.hparams or {}).get(k))}" for k in varying) or "-"


def row_label(group: Group, row: Row) -> str:
    """The row's name: its architecture, with its hyperparameter point when the group has several."""
    return f"{row.arch} ({hparams_text(group, row)})" if group.by_hparams else row.arch


def time_to_quality_texts(ttq: TimeToQuality, digits: int | None = None) -> tuple[str, str, str, str]:
    """Time to quality as ``(wall seconds, batches, both, CPU seconds)`` cell texts."""
    if ttq.runs == 0:
        return "-", "-", "-", "-"
    if ttq.reached == 0:
        return ("not reached",) * 4
    partial = f" ({ttq.reached}/{ttq.runs} reached)" if ttq.reached < ttq.runs else ""
    wall, step = number(ttq.wall_s, digits), fmt(ttq.step)  # batches are counted, not measured
    cpu = "-" if ttq.cpu_s is None else f"{number(ttq.cpu_s, digits)}{partial}"
    return f"{wall}{partial}", f"{step}{partial}", f"{wall} s / {step} batches{partial}", cpu


def step_ms_text(row: Row, digits: int | None = None, terse: bool = False) -> str:
    """The row's step time: side by side as ``median (p10-p90)`` (``terse``: the median), marked when wide;
    else the runs' median."""
    side = row.side_by_side
    if side is None:
        return shared_text(row, number(row.step_ms_median, digits))
    text = number(side.median, digits)
    if not terse:
        text += f" ({number(side.p10, digits, 3)}-{number(side.p90, digits, 3)})"
    return f"{text} {WIDE_MARK}" if row.side_by_side_wide else text


def shared_text(row: Row, text: str) -> str:
    """``text`` marked when the row's runs timed their steps while sharing the machine."""
    return f"{text} {SHARED_MARK}" if row.sharing and text != "-" else text


def status_text(row: Row, terse: bool = False) -> str:
    """The row's statuses with their counts, and how many runs were contended (``terse``: the mark and count)."""
    text = ", ".join(f"{n} {s}" for s, n in row.status.items())
    if not row.contended:
        return text
    return f"{text} {CONTENDED_MARK}{row.contended}" if terse else f"{text}; {row.contended} contended {CONTENDED_MARK}"


def _metric_texts(row: Row, digits: int | None) -> dict[str, str]:
    texts = {}
    for key, (name, scale) in _METRIC_COLUMNS.items():
        stat = row.metrics[name]
        texts[key] = mean_pm_std(stat, scale, digits) if key in PM_COLUMNS else \
            mean_text(stat, digits, count=key in COUNT_COLUMNS)
        texts[f"{key}_ci"] = ci_text(stat, scale, digits)
    return texts


def comparison_cells(group: Group, row: Row, terse: bool = False, columns: Sequence[str] | None = None,
                     digits: int | None = None) -> list[tuple[str, bool]]:
    """The cells of one row as ``(text, highlighted)``, matching ``comparison_columns``; the best FID is highlighted.

    ``digits``: significant digits of the numbers (default: 4, and 2 for a ± spread).
    """
    when, batches, both, cpu = time_to_quality_texts(row.ttq, digits)
    text = {
        "arch": row.arch,
        "hparams": hparams_text(group, row) if group.by_hparams else "-",
        "runs": fmt(len(row.runs)),
        "status": status_text(row, terse),
        "params": f"{millions(row.params_g)} / {millions(row.params_d)}",
        "flops": "-" if row.flops_per_step is None else number(row.flops_per_step / 1e9, digits),
        "step_ms": step_ms_text(row, digits, terse),
        "images_per_s": shared_text(row, mean_text(row.images_per_s, digits)),
        "wall_s": mean_text(row.wall_s, digits),
        **_metric_texts(row, digits),  # KID is small: shown in thousandths, as is usual
        "ttq_s": when,
        "ttq_cpu_s": cpu,
        "ttq_batches": batches,
        "ttq": both,
    }
    return [(text[key], key == "fid" and row.best) for key, _, _ in comparison_columns(group, terse, columns)]


def reference_text(label: str, ref: Metrics) -> str:
    """One reference point's scores, e.g. ``reference train vs test: FID 2.5, KID×10³ 0.1, ...``."""
    kid = ref.kid * 1e3 if ref.kid is not None else None
    parts = [f"FID {fmt(ref.fid)}", f"KID×10³ {fmt(kid)}"]
    parts += [f"{name} {fmt(ref.value(k))}" for k, name in (
        ("precision", "precision"), ("recall", "recall"), ("modes_covered", "modes"),
        ("classifier_score", "classifier score"))]
    return f"reference {label}: {', '.join(parts)}"


def highlight_text(group: Group) -> str:
    """Which FID is in bold and why, or why none is: bold is a tested claim, never the lowest mean alone."""
    best = next((row for row in group.rows if row.best), None)
    if best is not None:
        return (f"in bold the FID of {row_label(group, best)}, which the pairwise tests find better than every "
                "other row's")
    if group.scored_rows < 2:
        return "no FID in bold: one row, nothing to test it against"
    return f"no FID in bold: no row's FID is better than every other row's by the pairwise tests (p (Holm) < {ALPHA:g})"


def comparison_notes(group: Group) -> list[str]:
    """The lines printed under a comparison table: mixed settings, reference points, legend, timing and contention."""
    notes = []
    if group.mixed:
        notes.append(f"mixed protocols in this table (--allow-mixed): {differences_text(group.mixed)}")
    several = len(group.sized_references) > 1
    for side, references in group.sized_references.items():
        for key, label in _REFERENCES:
            ref = references.get(key)
            if ref is not None:
                at = "" if not several else f" at {side}x{side}" + (
                    " (real digits brought to that side, as the architectures trained at it saw them)"
                    if side != 28 else "")
                notes.append(reference_text(label + at, ref))
    notes.append(
        f"FID and KID: mean ± sample std over seeds, on MNIST-classifier features; {highlight_text(group)}. "
        f"Time to quality: training seconds and batches until FID first fell below {fmt(float(group.fid_target))} "
        f"(the first evaluation below it of the median seed among those that reached it; the lower middle seed of an "
        f"even count, so it is an evaluation a run made)."
    )
    notes.append(
        f"95% CI (FID's in the report files, every metric's in CSV and JSON): Student t interval of the mean over "
        f"seeds, which covers 95% for normal data at any number of seeds (the percentile bootstrap: 84-87% at 5 or "
        f"6); '-' under {MIN_INTERVAL_SEEDS} seeds, where it would span more than 12 standard errors."
    )
    if not group.by_hparams and len(group.rows) > 1:
        notes.append("Each architecture trained at one hyperparameter setting (run.json's config.hparams: its "
                     "defaults unless --set changed them), so this ranking holds for those settings, not for each "
                     "architecture at its best; bench sweep compares settings.")
    return notes + timing_notes(group)


def timing_notes(group: Group) -> list[str]:
    """Where the step times come from, which rows' times vary widely, and which runs were contended."""
    notes = []
    side = group.side_by_side
    if side is not None:
        t = side.times
        notes.append(
            f"step ms: median (p10-p90) of every architecture's training step timed side by side "
            f"({side.folder.name}/{STEP_TIMES}: {t.rounds} rounds of {t.steps_per_round} steps alternating the "
            f"architectures in one process, {t.threads} thread(s), {t.warmup_steps} warm-up steps left out), "
            f"not the runs' own medians, which followed the machine's load one after another (they stay in run.json)."
        )
    elif group.side_by_side_unused:
        notes.append(f"step ms: each run's own median, median over seeds ({group.side_by_side_unused}).")
    wide = [row.arch for row in group.rows if row.side_by_side_wide]
    if wide:
        notes.append(
            f"{WIDE_MARK} side-by-side step times whose rounds disagree (round medians over "
            f"{ArchStepTimes.ROUNDS_DISAGREE:g}x apart): {', '.join(wide)}; the machine's load changed while they "
            f"were timed, so compare them with care."
        )
    shared = {row_label(group, row): " and ".join(row.sharing) for row in group.rows if row.sharing}
    if shared:
        notes.append(
            f"{SHARED_MARK} timed while sharing the machine ({'; '.join(f'{k}: {v}' for k, v in shared.items())}): "
            f"a stacked run's step ms is one step of its whole stack, and its img/s are one seed's share; runs at "
            f"once (--jobs) each had their share of the CPUs. Compare these times only with times taken the same way."
        )
    contended = {row_label(group, row): row.contended for row in group.rows if row.contended}
    if contended:
        which = ", ".join(f"{label} {n}" for label, n in contended.items())
        notes.append(
            f"{CONTENDED_MARK} {sum(contended.values())} run(s) contended ({which}): they got less than "
            f"{Contention.CONTENDED_BELOW:.0%} of their threads' CPU time while training (CPU time over wall time "
            f"and threads), so their timing, and any time budget, measured the neighbours' load as much as the "
            f"architecture."
        )
    return notes


# Pairwise tests on FID, under every comparison table --------------------------------------

PAIRS_TITLE = "Pairwise tests on FID"
#: The columns of the pairwise tests as ``(key, header, numeric)``.
PAIR_COLUMNS = (("a", "A", False), ("b", "B", False), ("seeds", "seeds", True), ("a_beats_b", "P(A beats B)", True),
                ("a_beats_b_ci", "95% CI", True),
                ("p", "p", True), ("p_holm", "p (Holm)", True), ("verdict", "verdict", False))


def verdict_text(group: Group, pair: RowPair) -> str:
    """The plain verdict on one pair: which is better, or that these seeds cannot tell (and why, when too few)."""
    test = pair.test
    if test.winner is not None:
        return f"{row_label(group, pair.a if test.winner == test.a else pair.b)} better"
    text = f"not distinguishable with {test.n_a} vs {test.n_b} seeds"
    return f"{text} (too few)" if test.too_few else text


def pair_cells(group: Group, pair: RowPair, digits: int | None = None) -> list[str]:
    """The cells of one pairwise test, matching ``PAIR_COLUMNS``."""
    test = pair.test
    return [row_label(group, pair.a), row_label(group, pair.b), f"{test.n_a} vs {test.n_b}",
            number(test.a_beats_b, digits, 2),
            f"[{number(test.a_beats_b_low, digits, 2)}, {number(test.a_beats_b_high, digits, 2)}]",
            number(test.p, digits, 2), number(test.p_holm, digits, 2), verdict_text(group, pair)]


def pair_notes(group: Group) -> list[str]:
    """The lines under the pairwise tests: what each number means, and what these seeds can show."""
    m = len(group.pairs)
    notes = [
        f"P(A beats B): the share of seed pairs in which A's final FID is lower (ties count half; 0.5: no "
        f"tendency), with its 95% CI (Newcombe's score interval, method 5, which keeps a width at 0 and 1). p: "
        f"two-sided Mann-Whitney U test (exact for small samples without ties); p (Holm): corrected "
        f"with Holm's step-down method over the {m} pair(s) of this table. A verdict needs p (Holm) < "
        f"{ALPHA:g}; “not distinguishable” says these seeds cannot tell the two apart, not that they are equal."
    ]
    floors = {(p.test.n_a, p.test.n_b): p.test.p_floor for p in group.pairs if p.test.too_few}
    if floors:
        below = ", ".join(f"{number(floor, None, 2)} with {a} vs {b} seeds" for (a, b), floor in sorted(floors.items()))
        needed = seeds_needed(m)
        notes.append(
            f"(too few): no verdict was possible. Even if every seed of one beat every seed of the other, p (Holm, "
            f"over {m} pair(s)) could not fall below {ALPHA:g}: the smallest it can be is {below}."
            + (f" A verdict takes at least {needed} seeds per architecture." if needed else "")
        )
    return notes


def _pairs_table(group: Group, digits: int | None = None) -> Table:
    from rich import box
    from rich.text import Text

    table = Table(title=PAIRS_TITLE, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for key, header, numeric in PAIR_COLUMNS:
        table.add_column(header, justify="right" if numeric else "left", overflow="fold",
                         no_wrap=numeric or key in ("a", "b"))
    for pair in group.pairs:
        cells = [Text(text) for text in pair_cells(group, pair, digits)]  # plain text: a name is not markup
        table.add_row(*cells, style="bold" if pair.test.winner is not None else None)
    return table


def print_comparison(groups: list[Group], columns: Sequence[str] | None = None, digits: int | None = None) -> None:
    """Print one comparison table per group, best FID in bold, reference points and the pairwise tests under it."""
    from rich import box
    from rich.text import Text

    for index, group in enumerate(groups, 1):
        cols = comparison_columns(group, terse=True, columns=columns)
        keys = [key for key, _, _ in cols]
        rows = []
        for row in group.rows:
            cells = [Text(text, style="bold" if best else "")
                     for text, best in comparison_cells(group, row, terse=True, columns=columns, digits=digits)]
            if row.diverged and "status" in keys:
                cells[keys.index("status")].stylize("red")
            rows.append(cells)
        widths = [max([len(header), *(cell.cell_len for cell in (r[i] for r in rows))]) for i, (_, header, _) in
                  enumerate(cols)]
        for part, shown in enumerate(_parts(keys, widths, console.out.width)):
            title = comparison_title(index, group) + ("" if part == 0 else " (continued)")
            table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
            for i in shown:  # numbers, names and statuses stay whole; a part is narrow enough for them
                key, header, numeric = cols[i]
                table.add_column(header, justify="right" if numeric else "left", overflow="fold",
                                 no_wrap=numeric or key in ("arch", "status"))
            for cells in rows:
                table.add_row(*(cells[i] for i in shown))
            console.out.print(table)
        for line in comparison_notes(group):
            console.out.print(Text(line), soft_wrap=True)
        if group.pairs:
            console.out.print(_pairs_table(group, digits))
            for line in pair_notes(group):
                console.out.print(Text(line), soft_wrap=True)
        console.out.print()


def _parts(keys: list[str], widths: list[int], width: int) -> list[list[int]]:
    """The column indices of each table a terminal ``width`` wide shows: all at once where they fit, else
    :data:`FIRST_COLUMNS` first and the rest in as few tables as fit, each led by the first column."""
    cost = [w + 3 for w in widths]  # a column's cells, its padding either side and the rule between columns
    if sum(cost) <= width:
        return [list(range(len(keys)))]
    first = [i for i, key in enumerate(keys) if key in FIRST_COLUMNS] or [0]
    parts, current = [first], [0]
    for i in range(len(keys)):
        if i in first:
            continue
        if len(current) > 1 and sum(cost[j] for j in current) + cost[i] > width:
            parts.append(current)
            current = [0]
        current.append(i)
    if len(current) > 1:
        parts.append(current)
    return parts


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
