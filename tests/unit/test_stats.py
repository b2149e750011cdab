"""The statistics behind the tested differences: bootstrap intervals, Holm's correction, pairwise tests."""

from __future__ import annotations

import pytest

from bench.stats import BOOTSTRAP_RESAMPLES, PairTest, Stats, bootstrap_ci, holm, pairwise_lower_is_better, smallest_p


def test_holm_matches_a_hand_computed_example():
    # Sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, raised to 0.06 to keep the order).
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == [0.02] and holm([]) == []


def test_bootstrap_ci_is_reproducible_and_holds_the_mean():
    values = [10.0, 11.0, 12.5, 14.0, 15.0]
    low, high = bootstrap_ci(values)
    assert low < sum(values) / len(values) < high and low >= 10.0 and high <= 15.0
    assert bootstrap_ci(values) == (low, high)  # a fixed seed: the same runs give the same report
    assert bootstrap_ci([3.0]) == (None, None) and bootstrap_ci([]) == (None, None)
    assert bootstrap_ci([4.0, 4.0, 4.0]) == (4.0, 4.0)  # nothing to resample
    assert BOOTSTRAP_RESAMPLES == 9999


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
