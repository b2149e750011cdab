"""Run folders in, comparison groups out: loading, grouping by device and protocol, aggregating seeds.

Runs are grouped by the machine they ran on and by their protocol (budget, batch size,
training subset, precision, evaluation protocol), and aggregated per architecture over seeds
with :class:`bench.stats.Stats`. Runs with different protocols never share a row unless asked.
Every pair of rows is tested on FID (:func:`bench.stats.pairwise_lower_is_better`); a group
whose runs all come from one comparison folder holding ``step_times.json`` carries the
architectures' side-by-side step times.

The MNIST loader checks every data file by SHA-256, so ``config.data_dir`` never changes the
images and is not part of the protocol; ``train_subset`` is.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

from bench.config import default_fid_target
from bench.console import fmt
from bench.errors import UsageError
from bench.layout import RUN_JSON, Status
from bench.plans.steptimes import FILE as STEP_TIMES, StepTimes
from bench.runfolder import as_ended
from bench.record import Evaluation, Metrics, RunRecord, read_record
from bench.scores import METRIC_NAMES
from bench.stats import PairTest, Stats, finite, pairwise_lower_is_better

T = TypeVar("T")

#: One protocol setting's value: a JSON scalar (lists are kept as their JSON text).
Setting = str | int | float | bool | None
#: A protocol, flat: ``budget``, ``batch_size``, ``train_subset``, ``precision`` and ``eval.*``.
FlatProtocol = dict[str, Setting]
#: The prefix of the evaluation protocol's settings (from ``metrics.protocol``) in a flat protocol.
EVAL_PREFIX = "eval."


def is_finite(x: object) -> bool:
    """Whether ``x`` is a finite number (not a bool, None or NaN)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def evaluation_settings(protocol: FlatProtocol) -> dict[str, Setting]:
    """The evaluation protocol's settings in ``protocol``, without their prefix."""
    return {k[len(EVAL_PREFIX):]: v for k, v in protocol.items() if k.startswith(EVAL_PREFIX)}


def setting_text(key: str, value: Setting) -> str:
    """Format one protocol setting's value for people."""
    if key == "train_subset":
        return "all" if value is None else fmt(value)
    if isinstance(value, str) and len(value) > 16 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a SHA-256: the first 12 digits identify it well enough to read
    return fmt(value)


def differences_text(diff: dict[str, list[Setting]]) -> str:
    """``setting: value | value; ...`` for settings whose values differ between runs."""
    return "; ".join(f"{k}: {' | '.join(setting_text(k, v) for v in vals)}" for k, vals in diff.items())


# Loading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedRun:
    """One run folder, its record and its protocol."""

    path: Path
    record: RunRecord
    protocol: FlatProtocol

    @property
    def arch(self) -> str:
        return self.record.arch

    @property
    def status(self) -> str:
        return str(self.record.status)

    @property
    def seed(self) -> int:
        return self.record.seed

    @property
    def device(self) -> str:
        return self.record.env.device_name

    @property
    def hparams(self) -> dict[str, Any]:
        return self.record.config.hparams

    @property
    def evaluations(self) -> list[Evaluation]:
        return self.record.evaluations

    @property
    def contended(self) -> bool:
        """Whether the run got too little of its threads' CPU time for its timing to mean much."""
        return self.record.contention is not None and self.record.contention.contended

    @property
    def sharing(self) -> str | None:
        """How the run's step time was shared, if it was: ``stack of K seeds`` or ``N runs at once``."""
        stack, parallel = self.record.stack, self.record.config.parallel_runs
        if stack is not None and stack.size > 1:
            return f"stack of {stack.size} seeds"
        if parallel is not None and parallel > 1:
            return f"{parallel} runs at once"
        return None

    @property
    def evaluated(self) -> bool:
        """Whether the run records its evaluation protocol (older and unevaluated runs do not)."""
        return bool(evaluation_settings(self.protocol))


def _flatten(data: dict[str, Any], prefix: str) -> FlatProtocol:
    flat: FlatProtocol = {}
    for key in sorted(data):
        value = data[key]
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            flat[prefix + key] = json.dumps(value)  # hashable and comparable
        else:
            flat[prefix + key] = value
    return flat


#: The evaluation scale's key in a protocol (the evaluator's ``real_image_size``; absent in 28x28 protocols).
SCALE = "real_image_size"
#: The scale of an evaluation protocol that does not name one.
DEFAULT_SCALE = 28


def protocol_of(record: RunRecord) -> FlatProtocol:
    """The settings that must match for two runs to share a row, flat (``eval.*`` from metrics.protocol)."""
    cfg = record.config
    protocol: FlatProtocol = {
        "budget": cfg.budget.text(),
        "batch_size": cfg.batch_size,
        "train_subset": cfg.train_subset,
        "precision": cfg.precision or "fp32",
    }
    if record.metrics is not None:
        # The scale always: runs scored on different scales never share a table, and every heading names it.
        evaluation = {SCALE: DEFAULT_SCALE, **record.metrics.protocol}
        protocol.update(_flatten(evaluation, EVAL_PREFIX))
    return protocol


def _run_folders(root: Path) -> Iterable[Path]:
    for here, dirs, files in os.walk(root):
        if RUN_JSON in files:
            dirs[:] = []  # a run folder's own subfolders (tb/) hold no runs
            yield Path(here)
        else:
            dirs.sort()


def load_runs(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> list[LoadedRun]:
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
            if path.name != RUN_JSON:
                raise UsageError(f"{path}: not a run folder, a folder of runs, or a {RUN_JSON}")
            folders: Iterable[Path] = [path.parent]
        else:
            folders = _run_folders(path)
        for folder in folders:
            found.setdefault(folder.resolve(), folder)
    if not found:
        where = ", ".join(str(p) for p in paths)
        raise UsageError(f"no runs found in {where} (a run folder holds a {RUN_JSON})")
    runs = []
    for key in sorted(found):
        record = as_ended(found[key], read_record(found[key]))
        runs.append(LoadedRun(found[key], record, protocol_of(record)))
    return runs


# Aggregation over seeds ---------------------------------------------------------------------


@dataclass(frozen=True)
class TimeToQuality:
    """When the runs of a row first reached FID below ``target``: the evaluation of the median run among those
    that did (the lower middle one of an even count), its batches and training seconds, wall and CPU."""

    target: float
    reached: int
    runs: int  # runs with an evaluation log
    step: float | None
    wall_s: float | None
    cpu_s: float | None = None  # None: runs that did not record it


def time_to_quality(evaluations: Iterable[Evaluation], target: float) -> Evaluation | None:
    """The first evaluation with FID below ``target``, or None."""
    logged = [e for e in evaluations if is_finite(e.fid) and is_finite(e.step)]
    return next((e for e in sorted(logged, key=lambda e: e.step) if e.fid < target), None)


def _time_to_quality(runs: list[LoadedRun], target: float) -> TimeToQuality:
    logged = [r for r in runs if any(is_finite(e.fid) for e in r.evaluations)]
    hits = [hit for hit in (time_to_quality(r.evaluations, target) for r in logged) if hit is not None]
    # The median seed's evaluation, the lower middle one of an even count: an evaluation a run made, never a
    # point between two seeds' evaluations that no run was scored at.
    hits.sort(key=lambda e: (e.step, e.train_wall_s if is_finite(e.train_wall_s) else math.inf))
    if not hits:
        return TimeToQuality(target=target, reached=0, runs=len(logged), step=None, wall_s=None)
    median = hits[(len(hits) - 1) // 2]
    return TimeToQuality(target=target, reached=len(hits), runs=len(logged), step=int(median.step),
                         wall_s=float(median.train_wall_s) if is_finite(median.train_wall_s) else math.nan,
                         cpu_s=float(median.train_cpu_s) if is_finite(median.train_cpu_s) else None)


@dataclass
class Row:
    """One architecture (and hyperparameter point, when grouped by them) in one group."""

    arch: str
    runs: list[LoadedRun]
    hparams: dict[str, Any] | None
    status: dict[str, int]
    params_g: int | None
    params_d: int | None
    flops_per_step: int | None
    step_ms_median: float | None
    images_per_s: Stats
    wall_s: Stats
    metrics: dict[str, Stats]  # by name, in the order of bench.scores.METRIC_NAMES
    ttq: TimeToQuality
    best: bool = False
    #: This architecture's step times from its comparison's timing phase (None: not timed side by side).
    side_by_side: Stats | None = None
    #: Whether those times vary too much to compare with confidence (``ArchStepTimes.wide``).
    side_by_side_wide: bool = False

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    @property
    def contended(self) -> int:
        """How many of the row's runs were contended (got too little CPU time for their threads)."""
        return sum(r.contended for r in self.runs)

    @property
    def sharing(self) -> list[str]:
        """How the row's runs shared their step times (stacks, parallel runs), each way once; empty if none did."""
        return sorted({r.sharing for r in self.runs if r.sharing is not None})

    @property
    def fids(self) -> list[float | None]:
        """The final FID of every run (None where it has none)."""
        return [_metric(r, "fid") for r in self.runs]

    @property
    def diverged(self) -> bool:
        return bool(self.status.get(str(Status.DIVERGED)))


#: Statuses in the order a row lists them; any other comes after, by name.
_STATUS_ORDER = {str(Status.COMPLETED): 0, str(Status.DIVERGED): 1, str(Status.INTERRUPTED): 2}


def _first(values: Iterable[T | None]) -> T | None:
    return next((v for v in values if v is not None), None)


def _metric(run: LoadedRun, name: str) -> float | None:
    return None if run.record.metrics is None else run.record.metrics.value(name)


def aggregate(arch: str, runs: list[LoadedRun], fid_target: float, hparams: dict[str, Any] | None = None) -> Row:
    """Aggregate the runs of one architecture over seeds into a row."""
    status = Counter(r.status for r in runs)
    return Row(
        arch=arch,
        runs=runs,
        hparams=hparams,
        status={s: status[s] for s in sorted(status, key=lambda s: (_STATUS_ORDER.get(s, 9), s))},
        params_g=_first(r.record.params.get("generator") for r in runs),
        params_d=_first(r.record.params.get("discriminator") for r in runs),
        flops_per_step=_first(r.record.flops_per_step for r in runs),
        step_ms_median=Stats.of(r.record.timing.step_ms_median for r in runs).median,
        images_per_s=Stats.of(r.record.timing.images_per_s for r in runs),
        wall_s=Stats.of(r.record.timing.wall_s for r in runs),
        metrics={m: Stats.of((_metric(r, m) for r in runs), ci=True) for m in METRIC_NAMES},
        ttq=_time_to_quality(runs, fid_target),
    )


# Grouping by device and protocol ------------------------------------------------------------


class RowPair(NamedTuple):
    """Two rows of a group and their test on FID (``test.a`` is ``a``'s place in the group)."""

    a: Row
    b: Row
    test: PairTest


class SideBySide(NamedTuple):
    """The timing phase a group's step times come from, and its folder."""

    folder: Path
    times: StepTimes


@dataclass
class Group:
    """Runs on one device under one protocol (or several, with ``allow_mixed``): one row per architecture."""

    device: str
    protocol: FlatProtocol
    rows: list[Row]
    fid_target: float
    mixed: dict[str, list[Setting]] = field(default_factory=dict)
    #: The reference points of each image side among the runs (28x28, and 32x32 where an architecture trains at it).
    sized_references: dict[int, dict[str, Metrics]] = field(default_factory=dict)
    by_hparams: bool = False
    #: The comparison's side-by-side step times the rows show (None: the runs' own medians).
    side_by_side: SideBySide | None = None
    #: Why a step_times.json among the runs' folders is not shown, if one is not.
    side_by_side_unused: str | None = None

    @property
    def scale(self) -> int:
        """The side its runs were scored at: FIDs of two scales are not on one scale."""
        return int(self.protocol.get(EVAL_PREFIX + SCALE) or DEFAULT_SCALE)

    @property
    def references(self) -> dict[str, Metrics] | None:
        """The reference points of the smallest image side among the runs (28x28 unless all train larger)."""
        return next(iter(self.sized_references.values()), None)

    @property
    def runs(self) -> list[LoadedRun]:
        return [r for row in self.rows for r in row.runs]

    @property
    def scored_rows(self) -> int:
        """How many rows have a final FID to test."""
        return sum(1 for row in self.rows if finite(row.fids))

    @cached_property
    def pairs(self) -> list[RowPair]:
        """Every pair of rows with a final FID, tested over seeds and Holm-corrected together."""
        tests = pairwise_lower_is_better([row.fids for row in self.rows])
        return [RowPair(self.rows[t.a], self.rows[t.b], t) for t in tests]


class _Part(NamedTuple):
    """The runs that become one group, before aggregation."""

    device: str
    protocol: FlatProtocol
    mixed: dict[str, list[Setting]]
    runs: list[LoadedRun]


def _key(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, default=str)


def _training(protocol: FlatProtocol) -> FlatProtocol:
    return {k: v for k, v in protocol.items() if not k.startswith(EVAL_PREFIX)}


def _value_order(value: Setting) -> tuple[int, Any]:
    """Numbers in numeric order, then text, then None (``train_subset`` None means all images)."""
    if is_finite(value):
        return 0, value
    return (2, "") if value is None else (1, str(value))


def _differences(protocols: list[FlatProtocol]) -> dict[str, list[Setting]]:
    """The settings whose values differ, each with its distinct values.

    A protocol without evaluation settings (an unevaluated or older run) differs in none of them.
    """
    out: dict[str, list[Setting]] = {}
    for key in sorted({k for p in protocols for k in p}):
        among = [p for p in protocols if not key.startswith(EVAL_PREFIX) or evaluation_settings(p)]
        values = {_key({"v": p.get(key)}): p.get(key) for p in among}
        if len(values) > 1:
            out[key] = sorted(values.values(), key=_value_order)
    return out


def _buckets(runs: list[LoadedRun]) -> list[_Part]:
    """Split runs by device and protocol; a run without an evaluation protocol joins the one
    part of its device whose training protocol matches (its evaluated seeds), if there is one."""
    buckets: dict[tuple[str, str], _Part] = {}
    for run in [r for r in runs if r.evaluated] + [r for r in runs if not r.evaluated]:
        key = (run.device, _key(run.protocol))
        if not run.evaluated:
            same = [k for k, part in buckets.items() if k[0] == run.device and _training(part.protocol) == run.protocol]
            key = same[0] if len(same) == 1 else key
        buckets.setdefault(key, _Part(run.device, run.protocol, {}, [])).runs.append(run)
    return list(buckets.values())


def _mixed_parts(runs: list[LoadedRun]) -> list[_Part]:
    """One part per device, its differing settings recorded in ``mixed``."""
    by_device: dict[str, list[LoadedRun]] = {}
    for run in runs:
        by_device.setdefault(run.device, []).append(run)
    parts = []
    for device, members in by_device.items():
        protocols = [r.protocol for r in members]
        mixed = _differences(protocols)
        common: FlatProtocol = {}
        for protocol in protocols:  # eval.* come from the evaluated runs
            for k, v in protocol.items():
                if k not in mixed:
                    common.setdefault(k, v)
        parts.append(_Part(device, common, mixed, members))
    return parts


def _group(part: _Part, fid_target: float | None, by_hparams: bool) -> Group:
    if fid_target is None:  # the scale's own target; a table mixing scales (--allow-mixed) takes 28x28's
        fid_target = default_fid_target(part.protocol.get(EVAL_PREFIX + SCALE))
    members = sorted(part.runs, key=lambda r: str(r.path))
    rows: dict[tuple[str, str], list[LoadedRun]] = {}
    for run in members:
        rows.setdefault((run.arch, _key(run.hparams) if by_hparams else ""), []).append(run)
    group = Group(
        device=part.device,
        protocol=part.protocol,
        rows=[aggregate(arch, rs, fid_target, rs[0].hparams if by_hparams else None)
              for (arch, _), rs in sorted(rows.items())],
        fid_target=fid_target,
        mixed=part.mixed,
        sized_references=_sized_references(members),
        by_hparams=by_hparams,
    )
    _mark_best(group)
    _attach_side_by_side(group)
    return group


def _side_by_side_mismatch(group: Group, times: StepTimes) -> str | None:
    """Why ``times`` cannot stand for the group's rows, or None when it can."""
    missing = sorted({row.arch for row in group.rows} - set(times.archs))
    if missing:
        return f"it does not time {', '.join(missing)}"
    batch = group.protocol.get("batch_size")
    timed = sorted({times.archs[row.arch].batch_size for row in group.rows})
    if batch is not None and timed != [batch]:
        return f"it timed batches of {', '.join(map(str, timed))}, the runs trained on {batch}"
    precision = group.protocol.get("precision")
    if precision is not None and times.precision != precision:
        return f"it timed {times.precision}, the runs trained in {precision}"
    return None


def _attach_side_by_side(group: Group) -> None:
    """Give the rows their comparison's side-by-side step times when every run comes from that one comparison."""
    folders = sorted({run.path.parent for run in group.runs})
    found = []
    for folder in folders:
        try:
            times = StepTimes.load(folder)
        except UsageError as exc:  # a damaged file costs the side-by-side times, not the report
            group.side_by_side_unused = f"{exc}; the runs' own step times are shown"
            return
        if times is not None:
            found.append(SideBySide(folder, times))
    if not found:
        return
    if len(folders) > 1:
        group.side_by_side_unused = (f"the table's runs come from {len(folders)} folders, and side-by-side times "
                                     "compare the architectures of one comparison only")
        return
    why = _side_by_side_mismatch(group, found[0].times)
    if why is not None:
        group.side_by_side_unused = f"{found[0].folder.name}/{STEP_TIMES} is not shown: {why}"
        return
    group.side_by_side = found[0]
    for row in group.rows:
        arch = found[0].times.archs[row.arch]
        row.side_by_side, row.side_by_side_wide = arch.stats, arch.wide


def group_runs(
    runs: list[LoadedRun],
    fid_target: float | None = None,
    *,
    allow_mixed: bool = False,
    require_single_protocol: bool = False,
    by_hparams: bool = False,
) -> list[Group]:
    """Group runs by device and protocol, one row per architecture (and per hparams point with ``by_hparams``).

    ``fid_target`` is the time-to-quality target; None gives each group its evaluation scale's default
    (:func:`bench.config.default_fid_target`). Runs whose protocols differ land in separate groups;
    ``allow_mixed`` puts each device's runs in one group and records the differing settings in ``Group.mixed``;
    ``require_single_protocol`` refuses runs of more than one protocol.

    Raises:
        UsageError: ``require_single_protocol`` and the runs' protocols differ, or both
            ``allow_mixed`` and ``require_single_protocol`` are set.
    """
    if allow_mixed and require_single_protocol:
        raise UsageError("--allow-mixed and --strict contradict each other; choose one")
    parts = _buckets(runs)
    if require_single_protocol:
        diff = _differences([part.protocol for part in parts])
        if diff:
            raise UsageError(
                f"the runs differ in protocol ({differences_text(diff)}); "
                "report runs of one protocol, or pass --allow-mixed to put them in one table"
            )
    if allow_mixed:
        parts = _mixed_parts(runs)
    parts.sort(key=lambda p: (p.device, _key(p.protocol)))
    return [_group(part, fid_target, by_hparams) for part in parts]


def _fid(row: Row) -> float:
    fid = row.metrics["fid"].mean
    return math.inf if fid is None else fid


def _mark_best(group: Group) -> None:
    for row in group.rows:
        row.best = False
    best = tested_best(group)
    if best is not None:
        best.best = True


def tested_best(group: Group) -> Row | None:
    """The row whose final FID beats every other scored row's by the pairwise tests (Holm-corrected), if one does."""
    scored = group.scored_rows
    for row in group.rows:
        won = [pair for pair in group.pairs if pair.test.winner is not None and group.rows[pair.test.winner] is row]
        if scored > 1 and len(won) == scored - 1:
            return row
    return None


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
        kept = replace(group, rows=[replace(best[arch]) for arch in sorted(best)])  # pairs are tested anew
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
            f"the runs differ in protocol ({differences_text(diff)}); shown as separate tables "
            "(--allow-mixed puts them in one, --strict refuses)"
        )
    mixed = [g for g in groups if g.mixed]
    if mixed:
        notes.append(f"{len(mixed)} table(s) mix protocols (--allow-mixed): {differences_text(mixed[0].mixed)}")
    return "; ".join(notes) or None


def _side(run: LoadedRun) -> int:
    """The evaluation scale of ``run``'s reference points (the side its real digits were brought to)."""
    metrics = run.record.metrics
    if metrics is not None:
        return metrics.protocol.get(SCALE, DEFAULT_SCALE)
    return run.record.config.eval_scale or run.record.config.image_size or DEFAULT_SCALE


def _sized_references(runs: list[LoadedRun]) -> dict[int, dict[str, Metrics]]:
    """The reference points of each image side, from the first run of that side that has them."""
    sized: dict[int, dict[str, Metrics]] = {}
    for run in runs:
        if run.record.references is not None:
            sized.setdefault(_side(run), run.record.references)
    return dict(sorted(sized.items()))
