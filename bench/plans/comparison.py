"""A comparison: a plan of every (architecture, seed) under one protocol, trained on this machine.

Before the runs, each architecture's training step is timed side by side (``step_times.json``),
so the table's step times do not follow the load of the moment each run trained in. Then the
runs train, ``--jobs`` at once (by default what measures faster here).
"""

from __future__ import annotations

from bench import console
from bench.layout import Status
from bench.plans import parallelism  # noqa: F401  (imported now: it reads this process's start-up)
from bench.plans.sidebyside import ROUNDS, time_side_by_side
from bench.plans.backends import local_backend
from bench.plans.driver import Backend, Driver
from bench.plans.plan import Plan
from bench.plans.steptimes import StepTimes
from bench.stop import StopRequest


def run_comparison(plan: Plan, jobs: int | None, stop: StopRequest, timing_rounds: int = ROUNDS, *,
                   backend: Backend | None = None, retry_failed: bool = False, skip_damaged: bool = False) -> int:
    """Time the architectures side by side (once per plan), then train every unfinished run; return the exit status.

    ``backend``: where the runs train, started by the caller (Ray); by default here, as :func:`local_backend`
    chooses. ``retry_failed`` and ``skip_damaged`` are the driver's (``--retry-failed``, ``--skip-damaged``).
    """
    with stop.handling_signals():
        if timing_rounds and len(plan.archs) > 1 and StepTimes.load(plan.folder) is None:
            console.err.print(f"timing {', '.join(plan.archs)} side by side ({timing_rounds} rounds)",
                              markup=False, highlight=False, soft_wrap=True)
            times = time_side_by_side(plan.settings, plan.archs, rounds=timing_rounds, stop=stop)
            if times is not None:
                times.save(plan.folder)
        driver = {"retries": 0, "stop": stop, "retry_failed": retry_failed, "skip_damaged": skip_damaged}
        if backend is not None:
            return Driver(plan, backend, **driver).run()
        unfinished = sum(not e.status.finished or (retry_failed and e.status is Status.FAILED) for e in plan.runs)
        here = local_backend(plan.settings, jobs, unfinished, plan.archs)
        here.start()
        try:
            return Driver(plan, here, **driver).run()
        finally:
            here.stop()
