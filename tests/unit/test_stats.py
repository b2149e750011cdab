"""The statistics behind the tested differences: t intervals, Holm's correction, pairwise tests."""

from __future__ import annotations

import pytest

import math
import random

from bench.stats import (
    PairTest, Stats, a_beats_b_interval, holm, pairwise_lower_is_better, smallest_p, t_interval,
)


def test_holm_matches_a_hand_computed_example():
    # Sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, raised to 0.06 to keep the order).
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == [0.02] and holm([]) == []


def test_t_interval_matches_a_hand_computed_example():
    # mean 12.5, sample std sqrt(4.25), standard error sqrt(4.25 / 5); t(0.975, 4 degrees of freedom) = 2.776445
    half = 2.776445 * math.sqrt(4.25 / 5)
    assert t_interval([10.0, 11.0, 12.5, 14.0, 15.0]) == pytest.approx((12.5 - half, 12.5 + half), rel=1e-6)
    assert t_interval([3.0, 4.0]) == t_interval([3.0]) == t_interval([]) == (None, None)  # under 3 values
    assert t_interval([4.0, 4.0, 4.0]) == (4.0, 4.0)  # no spread


@pytest.mark.parametrize("n", [3, 5, 6])
def test_t_interval_covers_95_percent_of_normal_means_at_a_handful_of_seeds(n):
    # 4,000 samples of n seeds: the share of intervals holding the true mean is 95% within 2 points
    # (one standard error of that share is 0.34 points); the percentile bootstrap's is 78-85% here.
    rng = random.Random(n)
    held = 0
    for _ in range(4000):
        low, high = t_interval([rng.gauss(100.0, 15.0) for _ in range(n)])
        held += low <= 100.0 <= high
    assert abs(held / 4000 - 0.95) < 0.02


def test_stats_computes_the_interval_only_when_asked():
    assert Stats.of([1.0, 2.0, 3.0]).ci_low is None
    s = Stats.of([1.0, 2.0, 3.0, None, float("nan")], ci=True)
    assert s.n == 3 and s.ci_low is not None and s.ci_low <= 2.0 <= s.ci_high
    assert Stats.of([7.0], ci=True).ci_low is None  # one seed has no interval


def test_smallest_p_of_mann_whitney():
    assert smallest_p(2, 2) == pytest.approx(1 / 3)  # 2 / C(4, 2)
    assert smallest_p(3, 3) == pytest.approx(0.1)  # 2 / C(6, 3)
    assert smallest_p(6, 6) == pytest.approx(2 / 924)
    assert smallest_p(0, 3) == 1.0


def test_clearly_separated_samples_differ():
    a, b = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0], [50.0, 51.0, 52.0, 53.0, 54.0, 55.0]
    (pair,) = pairwise_lower_is_better([a, b])
    assert (pair.a, pair.b, pair.n_a, pair.n_b) == (0, 1, 6, 6)
    assert pair.a_beats_b == 1.0 and pair.u == 36.0
    assert pair.p == pytest.approx(2 / 924) and pair.p_holm == pair.p  # one pair: nothing to correct
    assert pair.different and pair.winner == 0 and not pair.too_few
    (reverse,) = pairwise_lower_is_better([b, a])
    assert reverse.a_beats_b == 0.0 and reverse.winner == 1


def test_identical_samples_do_not_differ():
    same = [20.0, 22.0, 25.0, 27.0, 30.0, 31.0]
    (pair,) = pairwise_lower_is_better([same, list(same)])
    assert pair.a_beats_b == 0.5 and pair.p == pytest.approx(1.0)
    assert not pair.different and pair.winner is None and not pair.too_few


def test_two_seeds_each_are_too_few_even_when_separated():
    (pair,) = pairwise_lower_is_better([[10.0, 11.0], [50.0, 51.0]])
    assert pair.a_beats_b == 1.0 and pair.p == pytest.approx(1 / 3)
    assert not pair.different and pair.too_few and pair.p_floor == pytest.approx(1 / 3)


def test_pairs_are_corrected_together_and_skip_empty_samples():
    well, mid, bad = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [11.0, 12.0, 13.0, 14.0, 15.0, 16.0], [None, float("nan")]
    pairs = pairwise_lower_is_better([well, mid, bad, [21.0, 22.0, 23.0, 24.0, 25.0, 26.0]])
    assert [(p.a, p.b) for p in pairs] == [(0, 1), (0, 3), (1, 3)]
    assert all(p.p_holm == pytest.approx(3 * p.p) for p in pairs)  # equal raw p: each times the 3 pairs
    assert all(p.p_floor == pytest.approx(3 * 2 / 924) and p.winner == p.a for p in pairs)
    assert pairwise_lower_is_better([well]) == [] and pairwise_lower_is_better([]) == []


def test_many_pairs_raise_the_floor():
    """With 15 pairs (six architectures), five seeds each can never reach p < 0.05 after correction."""
    five = [[float(10 * k + s) for s in range(5)] for k in range(6)]
    pairs = pairwise_lower_is_better(five)
    assert len(pairs) == 15 and all(p.too_few and not p.different for p in pairs)
    assert pairs[0].p_floor == pytest.approx(15 * 2 / 252)
    assert isinstance(pairs[0], PairTest)


def test_a_missing_scipy_is_one_clear_line(monkeypatch):
    import sys

    from bench.errors import BenchError

    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # import fails as when scipy is not installed
    with pytest.raises(BenchError, match=r"need scipy: pip install 'scipy>=1.10'"):
        pairwise_lower_is_better([[1.0, 2.0], [3.0, 4.0]])


def test_the_a_beats_b_interval_keeps_a_width_where_seeds_separate_fully_and_narrows_with_more():
    six, eight = a_beats_b_interval(1.0, 6, 6), a_beats_b_interval(1.0, 8, 8)
    assert six[1] == eight[1] == 1.0 and 0.5 < six[0] < eight[0] < 1.0  # 1 from a few seeds is not certainty
    low, high = a_beats_b_interval(0.7, 8, 8)
    assert 0.0 < low < 0.7 < high < 1.0
    mirrored = a_beats_b_interval(0.3, 8, 8)  # B beats A as often as A beat B above
    assert mirrored == pytest.approx((1 - high, 1 - low))
    assert a_beats_b_interval(0.0, 5, 5) == pytest.approx((0.0, 1 - a_beats_b_interval(1.0, 5, 5)[0]))


def test_the_a_beats_b_interval_covers_its_truth_on_normal_seeds():
    # 2,000 comparisons of 8 seeds each, B's seeds one standard deviation worse: P(A beats B) = Phi(1 / sqrt(2))
    rng = random.Random(8)
    truth = 0.5 * math.erfc(-0.5)
    held = 0
    for _ in range(2000):
        a, b = [rng.gauss(0.0, 1.0) for _ in range(8)], [rng.gauss(1.0, 1.0) for _ in range(8)]
        share = sum((x < y) + 0.5 * (x == y) for x in a for y in b) / 64
        low, high = a_beats_b_interval(share, 8, 8)
        held += low <= truth <= high
    assert 0.93 <= held / 2000 <= 0.99
