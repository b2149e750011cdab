"""How a plan's runs train fastest on this CPU: one after another with every free thread, or side by side in
processes of one thread each. Measured, not assumed.

The study's batch-64 steps use threads poorly, so side by side often wins, but not always: two
one-thread runs on two cores share caches and memory bandwidth (here they are worth about 1.35
two-thread runs, not 2), and every process pays its own start-up (Python, torch, the data, the
evaluator) before its first batch. So, before the runs, each architecture takes a few steps
with every free thread, with one thread alone, and with one thread while copies of it step
beside it (Python threads: the GIL only adds to their time, which errs towards one at a time),
and the plan's wall time is predicted both ways from its budget, counting the start-up of a
process as this process's own. Side by side is chosen only where it is predicted at least 5%
faster; the reason is recorded in every run.json (``config.parallelism``).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.config import PlanSettings
from bench.plans.sidebyside import build_contender
from bench.stats import Stats

#: Side by side must be predicted at least this much faster (wall time) than one after another.
MARGIN = 0.95
#: Steps of each measurement, after the warm-up.
STEPS, WARMUP = 8, 3
#: The start-up of a process where this one's cannot be read (no /proc).
DEFAULT_STARTUP_S = 5.0


@dataclass(frozen=True)
class StepCosts:
    """One architecture's median step (ms) with ``threads`` threads, with 1 thread alone, and with 1 thread while
    ``threads - 1`` copies step beside it; and its batches per epoch."""

    all_threads_ms: float
    one_thread_ms: float
    beside_ms: float
    batches_per_epoch: int
    #: Seconds the training images took to load: a run's own process pays them too.
    data_s: float = 0.0


@dataclass(frozen=True)
class Choice:
    """How the runs train: ``jobs`` at once with ``threads`` torch threads each, and why."""

    jobs: int
    threads: int
    why: str


def choose(settings: PlanSettings, archs: list[str], runs: int, free: int) -> Choice:
    """Measure ``archs`` on this CPU and choose how ``runs`` runs under ``settings`` train fastest on ``free`` CPUs."""
    if runs < 2 or free < 2:
        why = "one run" if runs < 2 else "one free CPU"
        return Choice(1, free, f"one at a time with {free} thread(s): {why}")
    start = time.perf_counter()
    probes = {arch: Probe(settings, arch, free) for arch in archs}
    alone = {arch: probe.costs() for arch, probe in probes.items()}
    short = too_short(settings, alone, runs, free, IMPORTS_S + max(c.data_s for c in alone.values()))
    if short:
        return Choice(1, free, f"one at a time with {free} threads: {short} (measured in "
                               f"{time.perf_counter() - start:.1f}s)")
    costs = {arch: probe.costs(full=True) for arch, probe in probes.items()}
    data_s = max(c.data_s for c in costs.values())
    quick = decide(settings, costs, runs, free, IMPORTS_S + data_s, time.perf_counter() - start)
    if quick.jobs == 1:
        return quick  # even a start-up as quick as this process's own does not pay
    # Side by side looks faster: time what a run's own process really pays before its first batch.
    startup = process_startup_s(settings, archs[0])
    return decide(settings, costs, runs, free, startup, time.perf_counter() - start)


def process_startup_s(settings: PlanSettings, arch: str) -> float:
    """Seconds from starting a process as ``--jobs`` starts a run's (spawn) until it is ready to train ``arch``:
    Python, torch and gan-bench imported, the training images loaded and the evaluator built."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    start = time.perf_counter()
    process = context.Process(target=_ready_to_train, args=(settings, arch, send), name="gan-bench start-up")
    process.start()
    send.close()
    try:
        receive.recv()
    except EOFError:
        return DEFAULT_STARTUP_S  # it died: count a typical start-up
    finally:
        process.join()
    return time.perf_counter() - start


def _ready_to_train(settings: PlanSettings, arch: str, ready: Any) -> None:
    """What a run's process does before its first batch, then say so."""
    from bench.data import training_images
    from bench.plans.execute import Evaluators
    from bench.registry import default_registry

    spec = default_registry().load(arch)
    cfg = settings.run_config(arch=arch)
    training_images(spec.image_size, torch.device("cpu"), cfg.data_dir, cfg.train_subset)
    Evaluators(settings).for_spec(spec)
    ready.send(True)
    ready.close()


def too_short(settings: PlanSettings, costs: dict[str, StepCosts], runs: int, free: int,
              startup: float) -> str | None:
    """Why side by side cannot pay, from the steps with every thread alone, if it cannot: the runs' processes
    would take longer to start (at least ``startup`` each wave) than the time side by side could save."""
    budget = settings.budget()
    waves = math.ceil(runs / free)
    if budget.kind == "time_budget":
        one_by_one = runs * budget.value
        if waves * (budget.value + startup) > MARGIN * one_by_one:
            return (f"{runs} runs of {budget.value:g}s would take longer side by side, a process starting in "
                    f"{startup:.1f}s")
        return None
    one_by_one = sum(runs / len(costs) * budget.value * (c.batches_per_epoch if budget.kind == "epochs" else 1)
                     * c.all_threads_ms / 1e3 for c in costs.values())
    if waves * startup >= MARGIN * one_by_one:
        return (f"{one_by_one:.1f}s of training one after another, less than side by side would spend starting "
                f"processes ({startup:.1f}s each)")
    return None


def decide(settings: PlanSettings, costs: dict[str, StepCosts], runs: int, free: int, startup: float,
           measured_s: float = 0.0) -> Choice:
    """The faster of one after another (``free`` threads) and ``free`` side by side (1 thread each), predicted from
    the measured ``costs`` (the plan's runs spread evenly over its architectures) and a process's ``startup``."""
    budget = settings.budget()
    waves = math.ceil(runs / free)
    per_arch = runs / len(costs)
    if budget.kind == "time_budget":  # the same wall time per run: what differs is the training done in it
        gain = sum(free * c.all_threads_ms / c.beside_ms for c in costs.values()) / len(costs)
        faster = gain >= 1 / MARGIN and waves * (budget.value + startup) <= MARGIN * runs * budget.value
        measured = f"{free} side by side train {gain:.2f}x the batches per second of one run with {free} threads"
    else:
        one_by_one = side_by_side = 0.0
        for c in costs.values():
            steps = budget.value * (c.batches_per_epoch if budget.kind == "epochs" else 1)
            one_by_one += per_arch * steps * c.all_threads_ms / 1e3
            side_by_side += per_arch * steps * c.beside_ms / 1e3 / free
        side_by_side += waves * startup
        faster = side_by_side <= MARGIN * one_by_one
        measured = (f"training predicted to take {side_by_side:.1f}s side by side, a process starting in "
                    f"{startup:.1f}s, against {one_by_one:.1f}s one after another")
    measured += f" (measured in {measured_s:.1f}s)"
    if faster:
        return Choice(min(free, runs), 1, f"{min(free, runs)} side by side with 1 thread each: {measured}")
    return Choice(1, free, f"one at a time with {free} threads: {measured}")


class Probe:
    """One architecture built as a run of the plan is, its steps timed on this CPU: with ``threads`` threads at
    once (on creation), then, if asked, with 1 thread alone and with 1 beside ``threads - 1`` copies of it."""

    def __init__(self, settings: PlanSettings, arch: str, threads: int):
        self.cfg = settings.run_config(arch="-")
        self.arch, self.threads = arch, threads
        self.images: dict[int, torch.Tensor] = {}
        start = time.perf_counter()
        self.lead = build_contender(arch, self.cfg, torch.device("cpu"), self.images)
        self.data_s = time.perf_counter() - start
        (self.all_threads_ms,) = self._timed(threads, [self.lead])

    def costs(self, full: bool = False) -> StepCosts:
        """The measured costs; without ``full`` only the all-thread step (the others NaN)."""
        one = beside = math.nan
        if full:
            (one,) = self._timed(1, [self.lead])
            copies = [self.lead] + [build_contender(self.arch, self.cfg, torch.device("cpu"), self.images)
                                    for _ in range(self.threads - 1)]
            beside = Stats.of(self._timed(1, copies)).median
        return StepCosts(self.all_threads_ms, one, beside, self.lead.sampler.batches_per_epoch, self.data_s)

    @staticmethod
    def _timed(threads: int, contenders: list[Any]) -> list[float]:
        """Each contender's median step with ``threads`` torch threads, the contenders stepping at once."""
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        medians: list[list[float]] = [[] for _ in contenders]
        try:
            if len(contenders) == 1:
                medians[0].append(_median_step(contenders[0]))
            else:
                workers = [threading.Thread(target=lambda c=c, m=m: m.append(_median_step(c)))
                           for c, m in zip(contenders, medians, strict=True)]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
        finally:
            torch.set_num_threads(previous)
        return [m[0] for m in medians]


def _median_step(c: Any) -> float:
    """The median of :data:`STEPS` timed steps of contender ``c`` after :data:`WARMUP` untimed ones (ms)."""
    times = []
    for i in range(WARMUP + STEPS):
        start = time.perf_counter()
        c.gan.train_step(c.sampler.next(), c.step)
        c.step += 1
        if i >= WARMUP:
            times.append((time.perf_counter() - start) * 1e3)
    return Stats.of(times).median


def startup_s() -> float:
    """How long this process has run: taken as this module is imported (with torch and the command's library),
    what a run's own process pays before it loads its data (read from /proc)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_STARTUP_S
    import os

    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


#: This process's start-up up to the import of this module (Python, torch, gan-bench).
IMPORTS_S = startup_s()
