"""Time the study's loop, the suite's runner and a bare loop on one architecture; build the record.

Three kinds of contender train the same networks from the same seed:

- **the study's loop as published** (:mod:`bench.perf.study`): torchvision's
  ``datasets.MNIST`` and a shuffling ``DataLoader`` with per-image PIL transforms, ``Variable``
  wrappers, NumPy latents, the study's step, and ``.item()`` plus a print (to a null sink)
  every batch;
- **the runner**: the suite's real runner, evaluation and sample grids off; with
  ``--precision bf16`` also the runner under bf16 autocast (the study stays fp32);
- **a bare loop**: the same training step on the same preloaded batches with nothing
  around it, so the runner's own overhead can be read off.

Rounds alternate the contenders so that a busy machine slows all of them alike; each
contender's first ``--warmup`` batches of a round are left out. The record gives batches/s,
the ratio to the study in the same round (median and min-max over rounds), FLOPs per step
(matmuls and convolutions, by ``FlopCounterMode``), the GFLOP/s that makes, and its share
of this machine's matmul peak, measured here.
"""

from __future__ import annotations

import enum
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import console
from bench.config import PRECISIONS, RunConfig, check_seed
from bench.contract import GAN
from bench.data import BatchSampler, training_images
from bench.device import AUTOCAST_DTYPES, autocast, resolve_device
from bench.environment import environment, tune_allocator
from bench.errors import UsageError
from bench.perf.study import (
    run_study_loop, study_dataloader, study_mnist_root, study_model, study_reference, study_step,
)
from bench.registry import default_registry
from bench.stats import Stats
from bench.training.flops import FLOP_STEPS
from bench.training.runner import Runner

#: Side of the square matrices whose product measures the matmul peak.
PEAK_SIZE = 2048
CPU = torch.device("cpu")


# Settings ---------------------------------------------------------------------------------------


@dataclass
class PerfConfig:
    """The settings of one ``bench perf``."""

    arch: str
    precision: str = "fp32"
    rounds: int = 3
    batches: int | None = None
    warmup: int = 10
    batch_size: int | None = None
    seed: int = 0
    train_subset: int | None = None
    cache_dir: str | None = None
    peak_seconds: float = 1.0
    json: str | None = None
    device: str = "cpu"
    cuda_graphs: bool = False

    def validate(self) -> None:
        """Raise :class:`UsageError` for settings that cannot work, before anything runs."""
        study_reference(self.arch)
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown --precision {self.precision!r}; choose from: {', '.join(PRECISIONS)}")
        at_least_one = {"--rounds": self.rounds, "--batches": self.batches, "--batch-size": self.batch_size}
        for flag, value in at_least_one.items():
            if value is not None and value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        if self.warmup < 0:
            raise UsageError(f"--warmup must be 0 or more, got {self.warmup}")
        check_seed(self.seed)
        if not self.peak_seconds > 0:
            raise UsageError(f"--peak-seconds must be positive, got {self.peak_seconds}")
        if math.isinf(self.peak_seconds):  # the peak's timing loop would never end
            raise UsageError(f"--peak-seconds must be finite, got {self.peak_seconds}")


# The contenders ---------------------------------------------------------------------------------


class Kind(enum.Enum):
    """What a contender trains with."""

    STUDY = "study"  # the study's loop on the study's data pipeline
    RUNNER = "runner"  # the suite's runner
    BARE = "bare"  # the suite's step on preloaded batches, nothing around it


@dataclass(frozen=True)
class Contender:
    """One contender: what trains, at which precision, and the table's name for it."""

    kind: Kind
    precision: str
    label: str

    @property
    def key(self) -> str:
        """Its key in the record's ``contenders``: ``study``, ``runner_fp32``, ``bare_bf16``, ..."""
        return self.kind.value if self.kind is Kind.STUDY else f"{self.kind.value}_{self.precision}"


#: The study trains in fp32 whatever ``--precision`` says: it is the published baseline.
STUDY = Contender(Kind.STUDY, "fp32", "study's loop (as published)")
#: Every contender, in the record's order.
CONTENDERS = (
    STUDY,
    Contender(Kind.RUNNER, "fp32", "runner"),
    Contender(Kind.RUNNER, "bf16", "runner, bf16 autocast"),
    Contender(Kind.BARE, "fp32", "bare loop (preloaded)"),
    Contender(Kind.BARE, "bf16", "bare loop, bf16 autocast"),
)


def precisions(precision: str) -> list[str]:
    """Return the precisions a ``--precision`` run measures: fp32 always, and that one."""
    return [p for p in PRECISIONS if p in ("fp32", precision)]


def lineup(precision: str) -> list[Contender]:
    """Return the contenders of a ``--precision`` run, in the record's order."""
    measured = precisions(precision)
    return [c for c in CONTENDERS if c.precision in measured]


@dataclass
class Timing:
    """One contender's measured batches in one round."""

    batch_ms: list[float]
    #: Per batch, time the contender spends outside its batches (the runner's loop bookkeeping).
    outside_ms: float = 0.0

    @cached_property
    def stats(self) -> Stats:
        """The batch times' statistics."""
        return Stats.of(self.batch_ms)

    @property
    def batches_per_s(self) -> float:
        """Measured batches over their total time (outliers included: they are part of the cost)."""
        return 1e3 / (self.stats.mean + self.outside_ms)

    @property
    def typical_ms(self) -> float:
        """The median batch time plus the time outside: robust to bursts of other work."""
        return self.stats.median + self.outside_ms


@dataclass(frozen=True)
class RunnerResult:
    """What perf reads back from one training run of the suite's runner."""

    #: Every batch's time in ms, warm-up included, from the runner's own batch timer.
    batch_ms: list[float]
    #: The runner's FLOP count of one step, averaged over ``flop_steps`` steps.
    flops_per_step: int | None
    flop_steps: int
    #: Training wall-clock: the batches and the loop's bookkeeping around them.
    train_wall_s: float


class Harness:
    """What every contender shares (architecture, settings, device, data), and how each one trains."""

    def __init__(self, cfg: PerfConfig, out_dir: Path):
        self.cfg = cfg
        self.spec = default_registry().load(cfg.arch)
        overrides = {} if cfg.batch_size is None else {"batch_size": cfg.batch_size}
        self.hparams = self.spec.make_config(overrides)
        self.batches = cfg.batches or study_reference(cfg.arch).default_batches
        self.out_dir = out_dir
        self.dev = resolve_device(cfg.device)
        self.data = training_images(self.spec.image_size, self.dev, None, cfg.train_subset)
        self.study_root = study_mnist_root(cfg.cache_dir)
        #: The latest runner contender's result: its FLOP count is the suite's.
        self.runner_result: RunnerResult | None = None

    def _build(self) -> GAN:
        torch.manual_seed(self.cfg.seed)
        return self.spec.build(self.hparams, self.dev)

    def train(self, contender: Contender) -> Timing:
        """Train ``contender`` for ``warmup + batches`` batches; return the times of the measured ones."""
        if contender.kind is Kind.STUDY:
            return self._study()
        if contender.kind is Kind.RUNNER:
            return self._runner(contender.precision)
        return self._bare(contender.precision)

    def _study(self) -> Timing:
        """Time the study's loop on the study's pipeline."""
        np.random.seed(self.cfg.seed)
        m = study_model(self.cfg.arch, self._build(), self.hparams, self.spec.image_size)
        loader = study_dataloader(self.spec.image_size, self.hparams.batch_size, self.study_root, self.cfg.train_subset)
        with open(os.devnull, "w") as sink:
            return Timing(run_study_loop(m, loader, self.batches, self.cfg.warmup, sink, self.dev))

    def _runner(self, precision: str) -> Timing:
        """Time the real runner: its own batch timer's readings, and its loop's time outside them."""
        result = self.runner_result = _train_with_runner(self, precision)
        times = result.batch_ms
        # Progress, log flushes and bookkeeping around the timed batches are part of its cost.
        outside_ms = (result.train_wall_s * 1e3 - sum(times)) / len(times)
        return Timing(times[self.cfg.warmup:] or times, outside_ms)

    def _bare(self, precision: str) -> Timing:
        """Time a bare loop: the same step on the same preloaded batches, timed like the runner times them."""
        gan = self._build()
        sampler = BatchSampler(self.data, self.hparams.batch_size, self.cfg.seed)
        # The plugin contract: whoever trains a GAN tells it the epoch's length, as the runner does.
        gan.batches_per_epoch = sampler.batches_per_epoch
        outs, times = [], []
        cuda = self.dev.type == "cuda"
        for step in range(self.cfg.warmup + self.batches):
            if cuda and step == self.cfg.warmup:
                torch.cuda.synchronize(self.dev)
                measured_from = time.perf_counter()
            start = time.perf_counter()
            real = sampler.next()
            with autocast(precision, self.dev):
                outs.append(gan.train_step(real, step))
            times.append((time.perf_counter() - start) * 1e3)
        if cuda:  # the host runs ahead of the GPU: time the measured batches as a whole
            torch.cuda.synchronize(self.dev)
            per = (time.perf_counter() - measured_from) * 1e3 / self.batches
            return Timing([per] * self.batches)
        return Timing(times[self.cfg.warmup:])

    def study_flops(self, steps: int) -> int:
        """Count a study step's FLOPs, averaged over ``steps`` steps, on a throwaway model; the RNG state is restored.

        Give ``steps`` the runner's count, so both average over the same batches (a whole
        5-batch critic cycle for wgan).
        """
        state = torch.get_rng_state()
        try:
            m = study_model(self.cfg.arch, self._build(), self.hparams, self.spec.image_size)
            real = self.data[: self.hparams.batch_size].clone()
            z = torch.randn(real.shape[0], self.hparams.latent_dim, device=self.dev)
            return count_flops(lambda: [study_step(m, real, z, i) for i in range(steps)]) // steps
        finally:
            torch.set_rng_state(state)


def _train_with_runner(h: Harness, precision: str) -> RunnerResult:
    """Train ``h``'s architecture through the suite's runner, evaluation and sample grids off.

    The one place perf touches the runner: what it builds, trains and reads back.
    """
    cfg = h.cfg
    run_cfg = RunConfig(
        arch=cfg.arch, steps=cfg.warmup + h.batches, batch_size=h.hparams.batch_size, seed=cfg.seed,
        device=str(h.dev), cuda_graphs=cfg.cuda_graphs, precision=precision, out=str(h.out_dir), sample_every=0,
        warmup_steps=cfg.warmup, train_subset=cfg.train_subset, eval=False,
    )
    runner = Runner(run_cfg, h.spec)
    runner.train()
    state = runner.run.state
    return RunnerResult(list(state.times_ms), state.flops_per_step, FLOP_STEPS, state.train_wall_s)


# Measurements -----------------------------------------------------------------------------------


def matmul_peak(dtype: torch.dtype, seconds: float = 1.0, size: int = PEAK_SIZE, device: torch.device = CPU) -> float:
    """Measure GFLOP/s of repeated ``size`` x ``size`` matrix products in ``dtype`` for about ``seconds``."""
    cuda = device.type == "cuda"
    if cuda:
        size *= 4  # a GPU needs a bigger product to reach its peak
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b  # warm-up: thread pool, kernel selection
    if cuda:
        torch.cuda.synchronize(device)
    n, start = 0, time.perf_counter()
    while True:
        a @ b
        n += 1
        if cuda:
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * size**3 * n / elapsed / 1e9


def count_flops(step: Callable[[], object]) -> int:
    """Count the FLOPs (matmuls and convolutions, as ``FlopCounterMode`` counts them) of one call of ``step``."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


@dataclass
class Rounds:
    """Every contender's timings and every precision's matmul peak, one entry per round."""

    timings: dict[Contender, list[Timing]]
    peaks: dict[str, list[float]]


def alternate(h: Harness, contenders: list[Contender]) -> Rounds:
    """Time every contender once per round, each round starting one contender later."""
    cfg = h.cfg
    rounds = Rounds({c: [] for c in contenders}, {p: [] for p in precisions(cfg.precision)})
    for r in range(cfg.rounds):
        console.err.print(f"perf {cfg.arch}: round {r + 1}/{cfg.rounds}", soft_wrap=True)
        for p, peaks in rounds.peaks.items():
            peaks.append(matmul_peak(AUTOCAST_DTYPES[p] or torch.float32, cfg.peak_seconds, device=h.dev))
        # So that no contender always runs first (or last).
        first = r % len(contenders)
        for c in contenders[first:] + contenders[:first]:
            rounds.timings[c].append(h.train(c))
    return rounds


def median_min_max(values: Iterable[float]) -> dict[str, float | None]:
    """Summarize a ratio over rounds as the record does: its median, min and max."""
    stats = Stats.of(values)
    return {"median": stats.median, "min": stats.min, "max": stats.max}


def contender_entry(c: Contender, timings: list[Timing], study: list[Timing], flops_per_step: int | None,
                    peak: float) -> dict[str, Any]:
    """Return the record's entry of one contender: speed, its ratio to the study round by round, FLOP rate."""
    bps = [t.batches_per_s for t in timings]
    median = Stats.of(bps).median
    gflops = flops_per_step * median / 1e9 if flops_per_step else None
    return {
        "precision": c.precision,
        "batches_per_s": bps,
        "batches_per_s_median": median,
        "batch_ms_median": [t.stats.median for t in timings],
        "vs_study": median_min_max(a / s.batches_per_s for a, s in zip(bps, study, strict=True)),
        "flops_per_step": flops_per_step,
        "gflops_per_s": gflops,
        "share_of_peak": gflops / peak if gflops else None,
    }


def runner_overhead(timings: dict[Contender, list[Timing]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Return the runner's time per batch over the bare loop's, per precision."""
    bare = {c.precision: ts for c, ts in timings.items() if c.kind is Kind.BARE}
    return {
        c.precision: {
            # Median batch times (+ the runner's time outside its timer) of alternating runs:
            # robust to bursts of other work, which mean times are not.
            "vs_bare_loop": median_min_max(
                run.typical_ms / b.typical_ms - 1 for run, b in zip(ts, bare[c.precision], strict=True)
            ),
            # Within each runner run: its loop's time outside the batch timer (progress, log
            # flushes, bookkeeping) over its mean batch time. Immune to other work between runs.
            "outside_batch_timer": median_min_max(t.outside_ms / t.stats.mean for t in ts),
        }
        for c, ts in timings.items()
        if c.kind is Kind.RUNNER
    }


def measure(cfg: PerfConfig) -> dict[str, Any]:
    """Run every contender ``cfg.rounds`` times, alternating; return the result record."""
    cfg.validate()
    # Process-wide, so before the first contender: the study's loop runs on the same allocator.
    tune_allocator()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="gan-bench-perf-") as tmp:
        h = Harness(cfg, Path(tmp))
        rounds = alternate(h, lineup(cfg.precision))
        load_after = os.getloadavg()[0]
        suite = h.runner_result  # every round trains the runner
        study_flops = h.study_flops(suite.flop_steps)
    flops = {c: study_flops if c.kind is Kind.STUDY else suite.flops_per_step for c in rounds.timings}
    peak = {p: max(v) for p, v in rounds.peaks.items()}
    return {
        "arch": cfg.arch,
        "precision": cfg.precision,
        "batch_size": h.hparams.batch_size,
        "rounds": cfg.rounds,
        "batches_per_round": h.batches,
        "warmup_batches": cfg.warmup,
        "train_subset": cfg.train_subset,
        "matmul_peak_gflops": peak,
        "contenders": {
            c.key: contender_entry(c, ts, rounds.timings[STUDY], flops[c], peak[c.precision])
            for c, ts in rounds.timings.items()
        },
        "runner_overhead": runner_overhead(rounds.timings),
        # Other work on the machine skews every number; 1-minute load average before and after.
        "load_average": {"before": load_before, "after": load_after, "cpus": os.cpu_count()},
        "device": str(h.dev),
        "cuda_graphs": cfg.cuda_graphs,
        "env": environment(h.dev),
    }


def machine_was_busy(record: dict[str, Any]) -> bool:
    """Tell whether other work skewed ``record``: a high load average, or rounds that disagree by over 1.5x."""
    env, load = record["env"], record["load_average"]
    # The load after includes this process's own threads.
    busy = max(load["before"], load["after"] - env["torch_threads"])
    bps = [c["batches_per_s"] for c in record["contenders"].values()]
    return busy > 0.5 * (load["cpus"] or 1) or any(max(v) > 1.5 * min(v) for v in bps)
