"""How often a "95%" interval over a handful of seeds holds the true value, measured.

The report's interval (bench.stats.t_interval, Student's t) against the percentile bootstrap of
the mean that the report used before: for each number of seeds, many data sets are drawn from a
known distribution, each gets both intervals, and the share of intervals that hold the
distribution's mean is the coverage. Normal data (what the t-interval assumes) and lognormal
data (skewed, as a few seeds that diverged make FIDs) are both drawn. The same is done for the
interval of P(A beats B) beside each pairwise test (bench.stats.a_beats_b_interval): seeds of A
and B drawn from two normal distributions a shift apart, whose true P(A beats B) is known.

    python results/interval_coverage.py --out results/interval-coverage

writes the numbers as JSON and a figure (PNG, PDF) beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.stats import CONFIDENCE, a_beats_b_interval, t_interval  # noqa: E402

SEEDS = (3, 4, 5, 6, 8, 10)
#: Seeds per architecture, and the shifts between A's and B's normal distributions (in standard deviations),
#: of the P(A beats B) interval's check: true P(A beats B) 0.5, 0.76 and 0.92.
PAIR_SEEDS = (5, 6, 8)
SHIFTS = (0.0, 1.0, 2.0)
DATA_SETS = 4000
RESAMPLES = 9999
#: Data sets bootstrapped at once (their resamples held in memory together).
CHUNK = 100
#: The distributions drawn from, each with its true mean.
DISTRIBUTIONS = {
    "normal": (lambda rng, size: rng.normal(0.0, 1.0, size), 0.0),
    "lognormal (sigma 0.5)": (lambda rng, size: rng.lognormal(0.0, 0.5, size), math.exp(0.125)),
}


def bootstrap_covers(data: np.ndarray, mean: float, rng: np.random.Generator) -> np.ndarray:
    """For each row of ``data``, whether its percentile-bootstrap interval of the mean holds ``mean``."""
    sets, n = data.shape
    held = np.empty(sets, dtype=bool)
    tail = (1 - CONFIDENCE) / 2
    for start in range(0, sets, CHUNK):
        rows = data[start:start + CHUNK]
        picks = rng.integers(0, n, size=(len(rows), RESAMPLES, n))
        means = np.take_along_axis(rows[:, None, :], picks, axis=2).mean(axis=2)
        low, high = np.quantile(means, [tail, 1 - tail], axis=1)
        held[start:start + CHUNK] = (low <= mean) & (mean <= high)
    return held


def coverage(seed: int = 0) -> dict:
    """Coverage of both intervals for every distribution and number of seeds."""
    rng = np.random.default_rng(seed)
    out: dict = {"data_sets": DATA_SETS, "resamples": RESAMPLES, "confidence": CONFIDENCE, "seed": seed, "results": []}
    for name, (draw, mean) in DISTRIBUTIONS.items():
        for n in SEEDS:
            data = draw(rng, (DATA_SETS, n))
            t_held = [low <= mean <= high for low, high in (t_interval(list(row)) for row in data)]
            out["results"].append({"distribution": name, "seeds": n, "t": float(np.mean(t_held)),
                                   "percentile_bootstrap": float(bootstrap_covers(data, mean, rng).mean())})
            print(f"{name}, {n} seeds: t {out['results'][-1]['t']:.3f}, "
                  f"bootstrap {out['results'][-1]['percentile_bootstrap']:.3f}", flush=True)
    return out


def pair_coverage(seed: int = 1) -> list[dict]:
    """Coverage of the P(A beats B) interval, A's seeds from N(0, 1) and B's from N(shift, 1) (lower is better)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in PAIR_SEEDS:
        for shift in SHIFTS:
            truth = 0.5 * math.erfc(-shift / 2)  # P(A < B) = Phi(shift / sqrt(2))
            held = 0
            for _ in range(DATA_SETS):
                a, b = rng.normal(0.0, 1.0, n), rng.normal(shift, 1.0, n)
                share = float((a[:, None] < b[None, :]).mean() + 0.5 * (a[:, None] == b[None, :]).mean())
                low, high = a_beats_b_interval(share, n, n)
                held += low <= truth <= high
            rows.append({"seeds": n, "shift": shift, "a_beats_b": truth, "coverage": held / DATA_SETS})
            print(f"P(A beats B) {truth:.2f}, {n} seeds each: {held / DATA_SETS:.3f}", flush=True)
    return rows


def draw_figure(numbers: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, len(DISTRIBUTIONS), figsize=(10, 4), sharey=True)
    se = math.sqrt(CONFIDENCE * (1 - CONFIDENCE) / numbers["data_sets"])
    for ax, name in zip(axes, DISTRIBUTIONS, strict=True):
        rows = [r for r in numbers["results"] if r["distribution"] == name]
        seeds = [r["seeds"] for r in rows]
        ax.plot(seeds, [r["t"] for r in rows], "o-", label="Student t (the report's)")
        ax.plot(seeds, [r["percentile_bootstrap"] for r in rows], "s--", label="percentile bootstrap")
        ax.axhline(CONFIDENCE, color="gray", linewidth=1, label=f"nominal {CONFIDENCE:.0%}")
        ax.axhspan(CONFIDENCE - 2 * se, CONFIDENCE + 2 * se, color="gray", alpha=0.2, linewidth=0)
        ax.set_title(f"{name} data")
        ax.set_xlabel("seeds per mean")
        ax.set_xticks(seeds)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("coverage of the true mean")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"How often a 95% interval of the mean holds it ({numbers['data_sets']:,} data sets per point, "
                 f"{numbers['resamples']:,} resamples; band: +-2 simulation errors)", fontsize=9)
    fig.tight_layout()
    for ext in (".png", ".pdf"):
        fig.savefig(out.with_suffix(ext), dpi=150, metadata={"CreationDate": None} if ext == ".pdf" else None)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="path without extension for the JSON and the figure")
    args = parser.parse_args(argv)
    out = Path(args.out)
    numbers = coverage()
    numbers["a_beats_b"] = pair_coverage()
    out.with_suffix(".json").write_text(json.dumps(numbers, indent=1) + "\n")
    draw_figure(numbers, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
