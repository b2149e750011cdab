"""One statistics helper: every summary of a sample (timings, perf rounds, metrics over seeds) is a :class:`Stats`."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Stats:
    """Summary statistics of a sample, computed once; every table only renders them.

    Only finite numbers count (a missing metric, a NaN loss). ``std`` is the sample standard
    deviation (n - 1); it and everything else is None where the sample is too small.
    """

    n: int
    mean: float | None = None
    std: float | None = None
    median: float | None = None
    min: float | None = None
    max: float | None = None
    p10: float | None = None
    p90: float | None = None

    @classmethod
    def of(cls, values: Iterable[Any]) -> Stats:
        xs = [float(v) for v in values if _finite(v)]
        if not xs:
            return cls(0)
        p10, p90 = (float(p) for p in np.percentile(np.asarray(xs, dtype=np.float64), [10, 90]))
        return cls(
            n=len(xs), mean=statistics.fmean(xs), std=statistics.stdev(xs) if len(xs) > 1 else None,
            median=statistics.median(xs), min=min(xs), max=max(xs), p10=p10, p90=p90,
        )

    @property
    def spread(self) -> float:
        """p90 / p10: 1.0 is perfectly steady."""
        if self.p10 is None or self.p90 is None:
            return float("nan")
        return self.p90 / self.p10 if self.p10 > 0 else float("inf")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
