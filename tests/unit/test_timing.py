"""The one statistics helper and the timing summary built on it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.stats import Stats
from bench.timing import summarize


def test_stats_of_finite_values_only():
    s = Stats.of([1.0, 2.0, None, float("nan"), 4.0, True, "x"])
    assert s.n == 3 and s.mean == pytest.approx(7 / 3) and s.median == 2.0 and (s.min, s.max) == (1.0, 4.0)
    assert s.std == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    assert (s.p10, s.p90) == pytest.approx(tuple(np.percentile([1.0, 2.0, 4.0], [10, 90])))


def test_stats_of_too_few_values():
    assert Stats.of([]) == Stats(0) and math.isnan(Stats.of([]).spread)
    one = Stats.of([5])
    assert one.n == 1 and one.mean == 5 and one.std is None and one.spread == 1.0


def test_summary_leaves_warmup_out_when_enough_batches_remain():
    times = [100.0] * 3 + [10.0] * 10
    t = summarize(times, [64] * 13, warmup=3, wall_s=1.0)
    assert t.warmup_steps == 3 and t.measured_steps == 10 and t.step_ms_median == 10.0
    assert t.images_per_s == pytest.approx(640 / 0.1)
    short = summarize([5.0, 7.0], [8, 8], warmup=10, wall_s=0.1)
    assert short.warmup_steps == 0 and short.measured_steps == 2 and short.step_ms_median == 6.0
