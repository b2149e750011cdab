"""The default parallelism: one after another or side by side, whichever is predicted faster from measurements."""

from __future__ import annotations

import pytest

from bench.config import PlanSettings
from bench.plans.parallelism import Choice, StepCosts, choose, decide

#: A 2-core machine as measured here: one 2-thread step 3 ms; two 1-thread runs side by side are worth 1.35 of it.
QUIET = StepCosts(all_threads_ms=3.0, one_thread_ms=3.3, beside_ms=2 * 3.0 / 1.35, batches_per_epoch=938)
SETTINGS = {"eval": False, "device": "cpu", "hparams": {}}


def test_a_few_short_runs_train_one_after_another_since_processes_cost_more_than_they_gain():
    choice = decide(PlanSettings(**SETTINGS, steps=400), {"vanilla": QUIET}, runs=4, free=2, startup=3.0)
    assert (choice.jobs, choice.threads) == (1, 2)
    assert choice.why.startswith("one at a time with 2 threads: training predicted to take 9.6s side by side")


def test_long_runs_train_side_by_side_where_that_is_measured_faster():
    choice = decide(PlanSettings(**SETTINGS, epochs=20), {"vanilla": QUIET}, runs=4, free=2, startup=3.0)
    assert (choice.jobs, choice.threads) == (2, 1) and choice.why.startswith("2 side by side with 1 thread each")


def test_runs_that_gain_nothing_side_by_side_train_one_after_another_however_long():
    same = StepCosts(all_threads_ms=3.0, one_thread_ms=6.0, beside_ms=6.0, batches_per_epoch=938)
    assert decide(PlanSettings(**SETTINGS, epochs=20), {"vanilla": same}, runs=4, free=2, startup=0.0).jobs == 1


def test_time_budgets_go_side_by_side_only_for_more_batches_per_second():
    assert decide(PlanSettings(**SETTINGS, time_budget=600), {"vanilla": QUIET}, runs=4, free=2, startup=3.0).jobs == 2
    slow = StepCosts(all_threads_ms=3.0, one_thread_ms=5.0, beside_ms=6.0, batches_per_epoch=938)
    choice = decide(PlanSettings(**SETTINGS, time_budget=600), {"vanilla": slow}, runs=4, free=2, startup=3.0)
    assert choice.jobs == 1 and "train 1.00x the batches per second" in choice.why


@pytest.mark.parametrize("runs, free, why", [(1, 2, "one run"), (4, 1, "one free CPU")])
def test_nothing_is_measured_for_one_run_or_one_free_cpu(runs, free, why):
    expected = Choice(1, free, f"one at a time with {free} thread(s): {why}")
    assert choose(PlanSettings(**SETTINGS, steps=400), ["vanilla"], runs, free) == expected


def test_the_measurement_times_every_way_a_run_can_train():
    choice = choose(PlanSettings(**SETTINGS, steps=400, train_subset=2000), ["vanilla"], runs=2, free=2)
    assert "measured in" in choice.why and choice.jobs in (1, 2)


def test_a_plan_too_short_to_pay_for_processes_is_decided_from_its_steps_alone():
    from bench.plans.parallelism import too_short

    assert "less than side by side would spend starting processes (3.0s each)" in too_short(
        PlanSettings(**SETTINGS, steps=400), {"vanilla": QUIET}, runs=4, free=2, startup=3.0)
    assert too_short(PlanSettings(**SETTINGS, epochs=20), {"vanilla": QUIET}, runs=4, free=2, startup=3.0) is None
    choice = choose(PlanSettings(**SETTINGS, steps=5, train_subset=2000), ["vanilla"], runs=4, free=2)
    assert choice.jobs == 1 and "of training one after another, less than" in choice.why
