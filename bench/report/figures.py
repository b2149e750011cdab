"""The report's figures, one function each: losses, FID against time and against batches, FID for
compute (against training FLOPs and training time), samples.

Every figure draws the rows of all groups: one colour per architecture throughout, one marker
and line style per group, and one FID axis per evaluation scale (FIDs of two scales are not
comparable). Each is written
atomically beside the report as ``<stem>-<name>.png`` (200 dpi, which Markdown links) and as
``.pdf`` and ``.svg`` of the same stem, for papers. A figure without data to draw (no
losses.csv, no evaluations, no samples.png) is left out. matplotlib is imported only here,
and only when a figure is drawn.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from bench import console, tables
from bench.report import cells
from bench.layout import LOSS_TAGS, LOSSES_CSV, SAMPLES
from bench.report.aggregate import Group, LoadedRun, Row, is_finite
from bench.storage import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Print resolution: journals ask for 300 dpi for photos and at least 150-200 for line art.
DPI = 200
#: Every figure is written in each format, one stem; the first is the one reports link.
FORMATS = ("png", "pdf", "svg")
#: No creation dates and fixed SVG element ids, so the same runs give byte-identical files;
#: TrueType fonts in the PDF, since publishers' checks refuse Type 3 fonts.
_RC = {"svg.hashsalt": "gan-bench", "pdf.fonttype": 42}
_METADATA = {"png": None, "pdf": {"CreationDate": None}, "svg": {"Date": None}}
#: A curve: ``{step: values}``, e.g. ``(D loss, G loss)`` or ``(train_wall_s, FID)``.
Curve = dict[int, tuple[float, ...]]


class Line(NamedTuple):
    """One row of the comparison as the figures draw it: its legend label, colour and marks."""

    label: str
    color: str
    row: Row
    #: The row's table: its marker and line style (one per table, so a pooled figure tells them apart)...
    marker: str = "o"
    linestyle: str = "-"
    #: ...and the side its FIDs were scored at, which chooses its panel.
    scale: int = 28


#: Per table of a pooled figure: the marker and line style of its rows.
TABLE_MARKS = (("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", (0, (5, 1, 1, 1))), ("P", (0, (1, 2))))


def figure_lines(groups: list[Group]) -> list[Line]:
    """The rows of ``groups`` with their labels (``[table]`` when there are several), one colour per
    architecture (and hyperparameter point) in every table, and one marker and line style per table."""
    names = {}
    for group in groups:
        for row in group.rows:
            names.setdefault(_row_name(group, row), len(names))
    palette = [f"C{i}" for i in range(10)]
    if len(names) > len(palette):
        from matplotlib import colormaps
        from matplotlib.colors import to_hex

        palette = [to_hex(c) for c in colormaps["tab20"].colors]
    lines = []
    for index, group in enumerate(groups, 1):
        marker, linestyle = TABLE_MARKS[(index - 1) % len(TABLE_MARKS)]
        for row in group.rows:
            name = _row_name(group, row)
            label = f"{name} [{index}]" if len(groups) > 1 else name
            lines.append(Line(label, palette[names[name] % len(palette)], row, marker, linestyle, group.scale))
    return lines


def _row_name(group: Group, row: Row) -> str:
    if group.by_hparams and row.hparams:
        return f"{row.arch} ({cells.hparams_text(group, row)})"
    return row.arch


def by_scale(lines: list[Line]) -> dict[int, list[Line]]:
    """``lines`` by the side their FIDs were scored at, smallest first: one FID axis per scale."""
    scales: dict[int, list[Line]] = {}
    for line in sorted(lines, key=lambda line: line.scale):
        scales.setdefault(line.scale, []).append(line)
    return scales


def _scales_with_fids(lines: list[Line]) -> dict[int, list[Line]]:
    """:func:`by_scale`, the scales without an evaluation to draw left out."""
    return {scale: scale_lines for scale, scale_lines in by_scale(lines).items()
            if any(_fid_curve(run) for line in scale_lines for run in line.row.runs)}


def figure_files(path: Path) -> list[Path]:
    """Return the files of the figure whose PNG is ``path``: one per :data:`FORMATS`, same stem."""
    return [path.with_suffix(f".{fmt}") for fmt in FORMATS]


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as ``path`` (a PNG) and as a PDF and an SVG beside it; return ``path``."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    if fig.get_layout_engine() is None:  # a figure of subfigures lays itself out (constrained)
        fig.tight_layout()
    with matplotlib.rc_context(_RC):
        for fmt, file in zip(FORMATS, figure_files(path), strict=True):
            with atomic_path(file) as tmp:
                fig.savefig(tmp, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
    return path


# Losses -------------------------------------------------------------------------------------


def _read_losses(run: LoadedRun) -> Curve:
    """losses.csv as ``{step: (D loss, G loss)}``; empty when the file is missing or unreadable."""
    d_tag, g_tag = LOSS_TAGS["d_loss"], LOSS_TAGS["g_loss"]
    curve: Curve = {}
    try:
        with open(run.path / LOSSES_CSV, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                try:
                    curve[int(row["step"])] = (float(row.get(d_tag) or "nan"), float(row.get(g_tag) or "nan"))
                except (KeyError, TypeError, ValueError):
                    continue
    except OSError:
        return {}
    return curve


def _mean_curve(curves: list[Curve]) -> tuple[list[int], list[tuple[float, ...]]]:
    """Mean over runs at the steps every run has (time budgets stop runs at different steps).

    A plain mean, unlike :class:`bench.timing.Stats`: a seed's NaN loss leaves a gap in the curve.
    """
    curves = [c for c in curves if c]
    if not curves:
        return [], []
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    means = [tuple(statistics.fmean(c[s][i] for c in curves) for i in range(len(curves[0][s]))) for s in steps]
    return steps, means


#: Panels per line of the losses figure.
LOSS_PANELS_ACROSS = 3


def losses_figure(lines: list[Line], path: Path) -> Path | None:
    """D and G losses of every row (mean over seeds), one panel per row with its own y-axis: the rows' losses
    differ in kind (cross-entropy, least squares, Wasserstein estimates, hinge) and in scale, so one shared axis
    would flatten most of them. None when no run logged losses."""
    from matplotlib.figure import Figure

    curves = [(line, *_mean_curve([_read_losses(r) for r in line.row.runs])) for line in lines]
    curves = [c for c in curves if c[1]]
    if not curves:
        return None
    across = min(LOSS_PANELS_ACROSS, len(curves))
    down = math.ceil(len(curves) / across)
    fig = Figure(figsize=(3.8 * across, 3.0 * down))
    axes = list(fig.subplots(down, across, squeeze=False).flat)
    for ax, (line, steps, means) in zip(axes, curves, strict=False):
        ax.plot(steps, [m[0] for m in means], color=line.color, label=f"{line.label}: D")
        ax.plot(steps, [m[1] for m in means], color=line.color, linestyle="--", label=f"{line.label}: G")
        ax.set_title(f"{line.label} (mean over seeds)", fontsize=9)
        ax.set_xlabel("batches")
        ax.set_ylabel("loss, as the architecture defines it")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(curves):]:  # the panels left over in the last line
        ax.axis("off")
    return _save(fig, path)


# FID ----------------------------------------------------------------------------------------


#: A legend of the FID figures: beside its axes, where it hides no curve and no reference's label.
LEGEND_BESIDE = {"fontsize": 8, "loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0}


def _fid_curve(run: LoadedRun) -> Curve:
    """``{step: (train_wall_s, FID)}`` of the run's evaluations (wall NaN where not recorded)."""
    return {
        int(e.step): (float(e.train_wall_s) if is_finite(e.train_wall_s) else math.nan, float(e.fid))
        for e in run.evaluations if is_finite(e.step) and is_finite(e.fid)
    }


def _plot_fid(ax: Axes, lines: list[Line], by_time: bool) -> list[float]:
    """One line per run: seeds under a time budget evaluate at different steps, so a mean over
    seeds would keep only the final point. Seeds of one row share its colour. Returns the FIDs drawn."""
    drawn: list[float] = []
    for line in lines:
        curves = [c for c in (_fid_curve(r) for r in line.row.runs) if c]
        for i, curve in enumerate(curves):
            steps = sorted(curve)
            xs = [curve[st][0] for st in steps] if by_time else steps
            pts = [(x, curve[st][1]) for x, st in zip(xs, steps, strict=True) if curve[st][1] > 0 and math.isfinite(x)]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=line.marker, linestyle=line.linestyle,
                    markersize=3, linewidth=1.2, alpha=0.85, label=line.label if i == 0 else None, color=line.color)
            drawn += [p[1] for p in pts]
    return drawn


def _fid_figure(lines: list[Line], path: Path, references: dict[int, list[Reference]], by_time: bool,
                ) -> Path | None:
    """One panel per evaluation scale, each with its own FID axis and its scale's references."""
    from matplotlib.figure import Figure

    scales = _scales_with_fids(lines)
    if not scales:
        return None
    fig = Figure(figsize=(7 * len(scales), 4.5))
    for ax, (scale, scale_lines) in zip(fig.subplots(1, len(scales), squeeze=False)[0], scales.items(), strict=True):
        fids = _plot_fid(ax, scale_lines, by_time)
        ax.set_yscale(choose_scale(fids))  # the one rule of every FID axis
        mark_references(ax, references.get(scale, []))
        ax.set_xlabel("training wall-clock time (s)" if by_time else "batches")
        ax.set_ylabel(f"FID (MNIST classifier features, {scale}x{scale})")
        ax.set_title(f"FID against {'training time' if by_time else 'batches'} (one line per seed)"
                     + (f": scored at {scale}x{scale}" if len(scales) > 1 else ""))
        ax.grid(alpha=0.3, which="both")
        ax.legend(**LEGEND_BESIDE)
    return _save(fig, path)


def fid_vs_time_figure(lines: list[Line], path: Path, references: dict[int, list[Reference]]) -> Path | None:
    """FID of every run against its training wall-clock time, each scale's references (the target, train vs
    test) drawn."""
    return _fid_figure(lines, path, references, by_time=True)


def fid_vs_batches_figure(lines: list[Line], path: Path, references: dict[int, list[Reference]]) -> Path | None:
    """FID of every run against its training batches, each scale's references (the target, train vs test) drawn."""
    return _fid_figure(lines, path, references, by_time=False)


# Quality for compute ------------------------------------------------------------------------

#: Where the data span this factor or more, an axis is logarithmic.
LOG_SPAN = 20.0


class Reference(NamedTuple):
    """A FID level drawn for orientation (the target, train vs test, noise vs test)."""

    label: str
    fid: float
    color: str


def _compute_points(run: LoadedRun) -> list[tuple[float, float, float]]:
    """``(training FLOPs, training seconds, FID)`` per evaluation: FLOPs = step x FLOPs per step (NaN unknown)."""
    per_step = run.record.flops_per_step
    return [
        (float(e.step) * per_step if per_step else math.nan,
         float(e.train_wall_s) if is_finite(e.train_wall_s) else math.nan, float(e.fid))
        for e in sorted(run.evaluations, key=lambda e: e.step) if is_finite(e.step) and is_finite(e.fid)
    ]


def choose_scale(values: list[float]) -> str:
    """``log`` when the positive ``values`` span LOG_SPAN or more, else ``linear``."""
    xs = [v for v in values if math.isfinite(v)]
    return "log" if xs and min(xs) > 0 and max(xs) / min(xs) >= LOG_SPAN else "linear"


def mark_references(ax: Axes, references: list[Reference]) -> None:
    """Draw each reference level as a line where it falls inside the data's y-range, else as a labelled arrow
    at the edge it lies beyond: the data choose the axis, the references never stretch it."""
    low, high = ax.get_ylim()
    ax.set_ylim(low, high)  # frozen before drawing
    beyond = {True: 0, False: 0}
    for ref in references:
        text = f"{ref.label}: FID {console.fmt(ref.fid)}"
        if low <= ref.fid <= high:
            ax.axhline(ref.fid, color=ref.color, linestyle=":", linewidth=1)
            ax.annotate(text, xy=(0.99, ref.fid), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                        fontsize=7, color=ref.color)
            continue
        above = ref.fid > high
        offset = 0.06 * beyond[above]  # several beyond one edge stack instead of overlapping
        beyond[above] += 1
        ax.annotate(f"{'↑' if above else '↓'} {text}", xy=(0.99, 0.98 - offset if above else 0.02 + offset),
                    xycoords="axes fraction", ha="right", va="top" if above else "bottom", fontsize=7,
                    color=ref.color)


def _label_log_x(ax: Axes, plain: bool) -> None:
    """Label a log x-axis as plain numbers (seconds) or powers of ten (FLOPs); at 1, 2 and 5 times each power
    of ten when it spans under two decades, where matplotlib's own minor labels run into each other."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    low, high = ax.get_xlim()
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if high / low < 100 else (1.0,)))
    ax.xaxis.set_minor_locator(LogLocator(subs="auto"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if plain:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: tables.number(float(value))))
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0e}".replace("e+", "e")))


def draw_fid_for_compute(fig: Figure, lines: list[Line], references: list[Reference]) -> list[Axes] | None:
    """FID of every run against its training FLOPs and against its training time, one line per seed, seeds of a
    row in its colour; None without evaluations to draw."""
    ax_flops, ax_time = fig.subplots(1, 2, sharey=True)
    xs: dict[int, list[float]] = {0: [], 1: []}
    fids: list[float] = []
    for line in lines:
        labelled = set()  # each axes names the row once, on its first line there
        for points in (p for p in (_compute_points(r) for r in line.row.runs) if p):
            for axis, ax in enumerate((ax_flops, ax_time)):
                drawn = [(pt[axis], pt[2]) for pt in points if math.isfinite(pt[axis]) and pt[axis] > 0]
                if not drawn:  # no FLOPs per step recorded (an older run): on the time axes only
                    continue
                ax.plot([d[0] for d in drawn], [d[1] for d in drawn], marker=line.marker, linestyle=line.linestyle,
                        markersize=3, linewidth=1.2, alpha=0.85, color=line.color,
                        label=None if axis in labelled else line.label)
                labelled.add(axis)
                xs[axis] += [d[0] for d in drawn]
            fids += [pt[2] for pt in points]
    if not fids:
        return None
    ax_flops.set_yscale(choose_scale(fids))
    for axis, ax, name in ((0, ax_flops, "training FLOPs (evaluation step x FLOPs per step)"),
                           (1, ax_time, "training wall-clock time (s)")):
        ax.set_xscale(choose_scale(xs[axis]))
        if ax.get_xscale() == "log":
            _label_log_x(ax, plain=axis == 1)
        ax.set_xlabel(name)
        ax.grid(alpha=0.3, which="both")
        mark_references(ax, references)
    ax_flops.set_ylabel("FID (MNIST classifier features)")
    ax_flops.set_title("FID for compute (one line per seed)")
    ax_time.set_title("FID for training time")
    ax_time.legend(**LEGEND_BESIDE)  # every row has training times; not every row a FLOP count
    uncounted = [line.label for line in lines if not any(r.record.flops_per_step for r in line.row.runs)]
    if uncounted:
        ax_flops.annotate(f"no FLOP count: {', '.join(uncounted)}", xy=(0.01, 0.01), xycoords="axes fraction",
                          fontsize=7, color="dimgray")
    return [ax_flops, ax_time]


def fid_vs_compute_figure(lines: list[Line], path: Path, references: dict[int, list[Reference]]) -> Path | None:
    """FID against training FLOPs and against training time side by side, one line of panels per evaluation
    scale, each with its scale's references; None without data."""
    from matplotlib.figure import Figure

    scales = _scales_with_fids(lines)
    if not scales:
        return None
    fig = Figure(figsize=(11, 4.5 * len(scales)), layout="constrained")
    panels = fig.subfigures(len(scales), 1, squeeze=False)[:, 0]
    for panel, (scale, scale_lines) in zip(panels, scales.items(), strict=True):
        draw_fid_for_compute(panel, scale_lines, references.get(scale, []))
        if len(scales) > 1:
            panel.suptitle(f"scored at {scale}x{scale}", fontsize=10)
    return _save(fig, path)


def references_by_scale(groups: list[Group]) -> dict[int, list[Reference]]:
    """The FID levels to mark on each evaluation scale's axes (:func:`references_of` its groups)."""
    scales = sorted({g.scale for g in groups})
    return {scale: references_of([g for g in groups if g.scale == scale]) for scale in scales}


def references_of(groups: list[Group]) -> list[Reference]:
    """The FID levels to mark: the target where every group has the same, and train vs test and noise vs test
    when all runs share one group."""
    targets = {float(group.fid_target) for group in groups}
    refs = [Reference("target", targets.pop(), "gray")] if len(targets) == 1 else []
    if len(groups) == 1:
        for key, label, color in (("train_vs_test", "train vs test", "green"), ("noise_vs_test", "noise vs test",
                                                                                   "firebrick")):
            ref = (groups[0].references or {}).get(key)
            if ref is not None and is_finite(ref.fid) and ref.fid > 0:
                refs.append(Reference(label, float(ref.fid), color))
    return refs


# Samples ------------------------------------------------------------------------------------


def samples_figure(lines: list[Line], path: Path) -> Path | None:
    """The final sample grid of every row (seed 0, else its lowest seed) side by side; None without any."""
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    samples = []
    for line in lines:
        run = min(line.row.runs, key=lambda r: (r.seed != 0, r.seed, str(r.path)))
        try:
            samples.append((f"{line.label} (seed {run.seed})", imread(run.path / SAMPLES, format="png")))
        except (OSError, ValueError, SyntaxError):  # missing or unreadable: that panel is left out
            continue
    if not samples:
        return None
    fig = Figure(figsize=(2.4 * len(samples), 2.8))
    axes = fig.subplots(1, len(samples), squeeze=False)[0]
    for ax, (label, image) in zip(axes, samples, strict=True):
        ax.imshow(image, cmap="gray")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    return _save(fig, path)


#: The figures a report draws, by the name each adds to the report's stem.
FIGURE_NAMES = ("losses", "fid-vs-time", "fid-vs-batches", "fid-vs-compute", "samples")


def figure_paths(out: str | os.PathLike) -> dict[str, Path]:
    """Each figure's PNG beside the report ``out``: ``<stem>-<name>.png``."""
    out = Path(out)
    return {name: out.parent / f"{out.stem}-{name}.png" for name in FIGURE_NAMES}


def write_figures(groups: list[Group], out: str | os.PathLike) -> list[Path]:
    """Write ``<stem>-losses``, ``-fid-vs-time``, ``-fid-vs-batches``, ``-fid-vs-compute`` and ``-samples`` figures
    beside ``out``.

    Each as PNG, PDF and SVG; the PNGs' paths are returned. A figure without data to draw is left out.
    """
    paths = figure_paths(out)
    lines, references = figure_lines(groups), references_by_scale(groups)
    drawn = [
        losses_figure(lines, paths["losses"]),
        fid_vs_time_figure(lines, paths["fid-vs-time"], references),
        fid_vs_batches_figure(lines, paths["fid-vs-batches"], references),
        fid_vs_compute_figure(lines, paths["fid-vs-compute"], references),
        samples_figure(lines, paths["samples"]),
    ]
    return [path for path in drawn if path is not None]
