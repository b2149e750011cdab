"""One statistics helper: every summary of a sample (timings, perf rounds, metrics over seeds) is a :class:`Stats`,
and every test between samples (architectures compared on FID over seeds) is a :class:`PairTest`.

The tests and the t quantiles come from ``scipy.stats``, imported only when one is computed, so
the commands that only time or train never pay for it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, ClassVar

import numpy as np

from bench.errors import BenchError

#: The coverage of the confidence intervals.
CONFIDENCE = 0.95
#: The fewest values a confidence interval is given for: from two, the t-interval of the mean spans
#: plus or minus 12.7 standard errors, which says nothing a reader can use.
MIN_INTERVAL_SEEDS = 3
#: A corrected p below this is a difference; at or above it, none can be claimed.
ALPHA = 0.05


@dataclass(frozen=True)
class Stats:
    """Summary statistics of a sample, computed once; every table only renders them.

    Only finite numbers count (a missing metric, a NaN loss). ``std`` is the sample standard
    deviation (n - 1); it and everything else is None where the sample is too small.
    ``ci_low``/``ci_high`` bound the mean (:func:`t_interval`), when asked for.
    """

    n: int
    mean: float | None = None
    std: float | None = None
    median: float | None = None
    min: float | None = None
    max: float | None = None
    p10: float | None = None
    p90: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    @classmethod
    def of(cls, values: Iterable[Any], *, ci: bool = False) -> Stats:
        """Summarize ``values``; ``ci`` adds the t confidence interval of the mean."""
        xs = finite(values)
        if not xs:
            return cls(0)
        p10, p90 = (float(p) for p in np.percentile(np.asarray(xs, dtype=np.float64), [10, 90]))
        low, high = t_interval(xs) if ci else (None, None)
        return cls(
            n=len(xs), mean=statistics.fmean(xs), std=statistics.stdev(xs) if len(xs) > 1 else None,
            median=statistics.median(xs), min=min(xs), max=max(xs), p10=p10, p90=p90, ci_low=low, ci_high=high,
        )

    @property
    def spread(self) -> float:
        """p90 / p10: 1.0 is perfectly steady."""
        if self.p10 is None or self.p90 is None:
            return float("nan")
        return self.p90 / self.p10 if self.p10 > 0 else float("inf")


def finite(values: Iterable[Any]) -> list[float]:
    """The finite numbers among ``values`` as floats (None, NaN, infinities and bools left out)."""
    return [float(v) for v in values if _finite(v)]


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _scipy_stats() -> Any:
    """``scipy.stats``, or one clear line on installing it (a dependency, but an older install may lack it)."""
    try:
        import scipy.stats
    except ImportError:
        raise BenchError("the report's statistics need scipy: pip install 'scipy>=1.10' (or reinstall gan-bench)"
                         ) from None
    return scipy.stats


def t_interval(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The Student-t confidence interval of the mean of ``values``; (None, None) under :data:`MIN_INTERVAL_SEEDS`.

    Not the bootstrap: at the 3 to 8 seeds of a comparison the percentile bootstrap of the mean
    resamples the seeds' own spread, which so few values understate, and covers about 85% where
    it claims 95%; the t-interval covers 95% for normal data at every n (results/interval_coverage.py
    measures both).
    """
    n = len(values)
    if n < MIN_INTERVAL_SEEDS:
        return None, None
    mean, sem = statistics.fmean(values), statistics.stdev(values) / math.sqrt(n)
    if sem == 0:
        return mean, mean
    half = float(_scipy_stats().t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sem
    return mean - half, mean + half


def a_beats_b_interval(a_beats_b: float, n_a: int, n_b: int) -> tuple[float, float]:
    """A confidence interval for P(A beats B) (the Mann-Whitney U over ``n_a * n_b``) from ``n_a`` and ``n_b``
    values: Newcombe's (2006) score-type interval with the Hanley-McNeil variance and N* = (n_a + n_b) / 2 - 1
    (his method 5). The bounds are where the estimate lies z standard errors from the candidate value, each
    error computed at that candidate, so the interval stays inside [0, 1] and keeps a width at 0 and 1, where
    seeds that separate fully put the estimate (a Wald or bootstrap interval has none there).
    """
    from scipy.optimize import brentq

    z = float(_scipy_stats().norm.ppf(0.5 + CONFIDENCE / 2))
    star = (n_a + n_b) / 2 - 1

    def spread(theta: float) -> float:  # the variance at theta over theta * (1 - theta)
        return (1 + star * ((1 - theta) / (2 - theta) + theta / (1 + theta))) / (n_a * n_b)

    def outside(theta: float) -> float:  # > 0 where the estimate lies more than z errors from theta
        return (theta - a_beats_b) ** 2 - z * z * theta * (1 - theta) * spread(theta)

    # At an estimate of 1 (or 0) ``outside`` is 0 there too: its factor (1 - theta) (or theta) is divided out.
    if a_beats_b >= 1:
        low = brentq(lambda t: (1 - t) - z * z * t * spread(t), 0.0, 1.0)
    else:
        low = 0.0 if a_beats_b <= 0 else brentq(outside, 0.0, a_beats_b)
    if a_beats_b <= 0:
        high = brentq(lambda t: t - z * z * (1 - t) * spread(t), 0.0, 1.0)
    else:
        high = 1.0 if a_beats_b >= 1 else brentq(outside, a_beats_b, 1.0)
    return float(low), float(high)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down correction of ``pvalues`` for testing them together, in their order.

    The k-th smallest p (from 0) is multiplied by ``m - k``, and no corrected p is smaller than
    that of a smaller raw p (so the order of the raw p-values is kept); all capped at 1.
    """
    m = len(pvalues)
    corrected = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        corrected[index] = running
    return corrected


def smallest_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided Mann-Whitney p that ``n_a`` against ``n_b`` values can give (exact, fully separated)."""
    if not (n_a and n_b):
        return 1.0
    mannwhitneyu = _scipy_stats().mannwhitneyu
    return float(mannwhitneyu(range(n_a), range(n_a, n_a + n_b), method="exact").pvalue)


@dataclass(frozen=True)
class PairTest:
    """Samples ``a`` and ``b`` (indices into what was compared) tested where lower is better, as FID is.

    ``a_beats_b`` is the probability that a value of ``a`` is lower than one of ``b`` (ties
    count half: the common-language effect size, U over n_a * n_b). ``p`` is the two-sided
    Mann-Whitney U p-value (exact where scipy chooses it: small samples without ties),
    ``p_holm`` the same corrected with Holm's method over every pair compared together, and
    ``p_floor`` the smallest ``p_holm`` these sample sizes could give at all. ``a_beats_b_low`` and
    ``a_beats_b_high`` bound ``a_beats_b`` (:func:`a_beats_b_interval`).
    """

    a: int
    b: int
    n_a: int
    n_b: int
    a_beats_b: float
    u: float
    p: float
    p_holm: float
    p_floor: float
    a_beats_b_low: float = 0.0
    a_beats_b_high: float = 1.0

    ALPHA: ClassVar[float] = ALPHA

    @property
    def different(self) -> bool:
        """Whether the corrected p says the two differ."""
        return self.p_holm < self.ALPHA

    @property
    def winner(self) -> int | None:
        """The index of the better sample when they differ, else None."""
        if not self.different:
            return None
        return self.a if self.a_beats_b > 0.5 else self.b

    @property
    def too_few(self) -> bool:
        """Whether these sample sizes could not show a difference even if every value of one beat the other."""
        return self.p_floor >= self.ALPHA


def pairwise_lower_is_better(samples: Sequence[Iterable[Any]]) -> list[PairTest]:
    """Test every pair of ``samples`` (those with a finite value), lower being better, Holm-corrected together."""
    mannwhitneyu = _scipy_stats().mannwhitneyu
    xs = [finite(s) for s in samples]
    pairs = [(i, j) for i, j in combinations(range(len(xs)), 2) if xs[i] and xs[j]]
    if not pairs:
        return []
    raw = []
    for i, j in pairs:
        # U of b counts the pairs where b's value is the larger, i.e. where a's is the lower (better).
        result = mannwhitneyu(xs[j], xs[i], alternative="two-sided")
        raw.append((float(result.statistic), float(result.pvalue)))
    corrected = holm([p for _, p in raw])
    floors = [smallest_p(len(xs[i]), len(xs[j])) for i, j in pairs]
    # Holm multiplies the smallest raw p by the number of pairs, and no corrected p falls below that.
    least = min(1.0, len(pairs) * min(floors))
    tests = []
    for (i, j), (u, p), p_holm, floor in zip(pairs, raw, corrected, floors, strict=True):
        share = u / (len(xs[i]) * len(xs[j]))
        low, high = a_beats_b_interval(share, len(xs[i]), len(xs[j]))
        tests.append(PairTest(a=i, b=j, n_a=len(xs[i]), n_b=len(xs[j]), a_beats_b=share, u=u, p=p, p_holm=p_holm,
                              p_floor=max(floor, least), a_beats_b_low=low, a_beats_b_high=high))
    return tests


def seeds_needed(pairs: int, most: int = 30) -> int | None:
    """The fewest seeds per sample with which ``pairs`` Holm-corrected pairs could show a difference (None: > most)."""
    if pairs < 1:
        return None
    return next((n for n in range(2, most + 1) if pairs * smallest_p(n, n) < ALPHA), None)
