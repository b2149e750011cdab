"""Honest per-batch timing: no host sync per batch, warm-up kept apart, median and spread.

On the CPU a batch's time is wall-clock around it (the CPU executes eagerly). On CUDA a pair
of events brackets each batch and the elapsed times are read only when the caller asks
(at log intervals), so timing adds no synchronization to the hot path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from bench.stats import Stats


class StepTimer:
    """Time every batch on ``device``; read the times lazily with :meth:`drain`."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._done: list[float] = []
        self._pending: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._t0 = 0.0
        self._start_event: torch.cuda.Event | None = None

    def start(self) -> None:
        if self.cuda:
            self._start_event = torch.cuda.Event(enable_timing=True)
            self._start_event.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._pending.append((self._start_event, end))
        else:
            self._done.append((time.perf_counter() - self._t0) * 1e3)

    def drain(self) -> list[float]:
        """Resolve pending CUDA events (one sync); return the batch times since the last drain, in ms."""
        if self._pending:
            self._pending[-1][1].synchronize()
            self._done.extend(start.elapsed_time(end) for start, end in self._pending)
            self._pending.clear()
        done, self._done = self._done, []
        return done


@dataclass
class TimingSummary:
    """Batch-time statistics, warm-up excluded."""

    warmup_steps: int
    measured_steps: int
    step_ms_median: float
    step_ms_p10: float
    step_ms_p90: float
    step_ms_mean: float
    images_per_s: float
    wall_s: float

    @property
    def spread(self) -> float:
        """p90 / p10: 1.0 is perfectly steady."""
        return self.step_ms_p90 / self.step_ms_p10 if self.step_ms_p10 > 0 else float("inf")


def block_spread(times_ms: list[float], block: int = 10) -> float:
    """p90 / p10 of the means of consecutive blocks of ``block`` batch times.

    Over blocks, a schedule's own rhythm (wgan's generator step on every 5th batch) averages
    out and what is left is the machine: other work that came and went.
    """
    blocks = [sum(times_ms[i : i + block]) / block for i in range(0, len(times_ms) - block + 1, block)]
    return Stats.of(blocks).spread


def summarize(times_ms: list[float], batch_sizes: list[int], warmup: int, wall_s: float) -> TimingSummary:
    """Summarize batch times, leaving the first ``warmup`` batches out when enough remain."""
    if len(times_ms) <= warmup:
        warmup = 0  # too short a run to set any aside; the numbers then include warm-up
    measured = times_ms[warmup:]
    stats = Stats.of(measured)
    if stats.n == 0:
        nan = float("nan")
        return TimingSummary(warmup, 0, nan, nan, nan, nan, nan, wall_s)
    images = float(sum(batch_sizes[warmup:]))
    return TimingSummary(
        warmup_steps=warmup,
        measured_steps=stats.n,
        step_ms_median=stats.median,
        step_ms_p10=stats.p10,
        step_ms_p90=stats.p90,
        step_ms_mean=stats.mean,
        images_per_s=images / (sum(measured) / 1e3),
        wall_s=wall_s,
    )
