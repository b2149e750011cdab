"""The comparison table as text: its columns, every cell, the notes under it and the pairwise tests'
cells, one text for every format (the terminal, Markdown, LaTeX)."""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Sequence

from bench.console import fmt
from bench.errors import UsageError
from bench.plans.steptimes import FILE as STEP_TIMES, ArchStepTimes
from bench.record import Contention, Metrics
from bench.report.aggregate import (
    SCALE, FlatProtocol, Group, Row, RowPair, TimeToQuality, differences_text, evaluation_settings, setting_text,
)
from bench.scores import METRICS, RANKING
from bench.stats import ALPHA, MIN_INTERVAL_SEEDS, Stats, seeds_needed
from bench.tables import at_place, millions, number, pm_text, spread_place


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


#: The metrics with a comparison column (and a ``<key>_ci`` column), in the order of the columns.
_COLUMN_METRICS = tuple(m for m in METRICS if m.headline and m.header)
#: Columns the terminal leaves out to fit a screen (the report files keep them; ``--columns`` chooses).
TERSE_OMITS = frozenset({"params", "flops", "ttq_s", "ttq_batches"} |
                        {m.column_key for m in _COLUMN_METRICS if not m.terse})
#: The columns a terminal too narrow for the whole table shows first, together; the others follow in tables of
#: their own, each led by the architecture, so no number is ever broken across lines.
FIRST_COLUMNS = ("arch", "hparams", "runs", "fid", "fid_ci", "ttq")
#: The mark of a row whose side-by-side step times vary widely, of a row with contended runs, and of
#: times taken while runs shared the machine (stacked seeds, --jobs).
WIDE_MARK, CONTENDED_MARK, SHARED_MARK = "†", "‡", "§"


def _all_columns(target: str) -> list[tuple[str, str, bool]]:
    """Every column a comparison table can show as ``(key, header, numeric)``, in the default order."""
    cols = [
        ("arch", "arch", False), ("hparams", "hparams", False), ("runs", "runs", True), ("status", "status", False),
        ("params", "params G/D (M)", True), ("flops", "GFLOP/step", True), ("step_ms", "step ms", True),
        ("images_per_s", "img/s", True), ("wall_s", "wall s", True),
    ]
    for m in _COLUMN_METRICS:  # the ranking metric's interval beside it, the others' at the end
        cols.append((m.column_key, m.header, True))
        if m is RANKING:
            cols.append((f"{m.column_key}_ci", f"{m.header} 95% CI", True))
    cols += [
        ("ttq_s", f"s to FID<{target}", True), ("ttq_cpu_s", f"CPU s to FID<{target}", True),
        ("ttq_batches", f"batches to FID<{target}", True), ("ttq", f"to FID<{target}", True),
    ]
    cols += [(f"{m.column_key}_ci", f"{m.header} 95% CI", True) for m in _COLUMN_METRICS if m is not RANKING]
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
    for m in _COLUMN_METRICS:
        stat = row.metrics[m.name]
        texts[m.column_key] = mean_pm_std(stat, m.scale, digits) if m.spread else mean_text(stat, digits, count=m.count)
        texts[f"{m.column_key}_ci"] = ci_text(stat, m.scale, digits)
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
    parts = []
    for m in _COLUMN_METRICS:
        value = ref.value(m.name)
        parts.append(f"{m.header} {fmt(value if value is None else value * m.scale)}")
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
        f"Time to quality: training seconds (wall, and the training process's CPU seconds, which load does not "
        f"inflate) and batches until FID first fell below {fmt(float(group.fid_target))} "
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


