"""bench perf's pieces without training: the contenders, the record's statistics and its table."""

from __future__ import annotations

import statistics

import pytest
from rich.console import Console

from bench import tables
from bench.errors import UsageError
from bench.perf.measure import (
    CONTENDERS, STUDY, Contender, Kind, PerfConfig, Timing, contender_entry, lineup, machine_was_busy,
    median_min_max, precisions, runner_overhead,
)


def keys(contenders: list[Contender]) -> list[str]:
    return [c.key for c in contenders]


def test_each_precision_lines_up_the_study_then_the_runner_then_the_bare_loop():
    assert keys(lineup("fp32")) == ["study", "runner_fp32", "bare_fp32"]
    assert keys(lineup("bf16")) == ["study", "runner_fp32", "runner_bf16", "bare_fp32", "bare_bf16"]
    assert precisions("fp32") == ["fp32"] and precisions("bf16") == ["fp32", "bf16"]
    assert STUDY.kind is Kind.STUDY and STUDY.precision == "fp32"  # the published baseline, whatever --precision says


def test_a_contender_is_one_description_of_its_key_kind_precision_and_label():
    assert len({c.key for c in CONTENDERS}) == len(CONTENDERS)
    assert {c.key: c.label for c in CONTENDERS} == {
        "study": "study's loop (as published)",
        "runner_fp32": "runner",
        "runner_bf16": "runner, bf16 autocast",
        "bare_fp32": "bare loop (preloaded)",
        "bare_bf16": "bare loop, bf16 autocast",
    }
    for c in CONTENDERS:
        assert c.key.startswith(c.kind.value)
        assert c.kind is Kind.STUDY or c.key.endswith(c.precision)


def test_a_rounds_speed_counts_every_batch_and_its_typical_time_is_the_median():
    t = Timing([10.0, 10.0, 40.0], outside_ms=2.0)
    assert t.batches_per_s == pytest.approx(1e3 / (20.0 + 2.0))  # the outlier is part of the cost
    assert t.typical_ms == 12.0  # the outlier is not typical
    assert t.stats.min == 10.0 and t.stats.max == 40.0


def test_ratios_over_rounds_are_summarized_by_median_min_and_max():
    values = [1.5, 0.5, 2.5, 1.0]
    assert median_min_max(values) == {"median": statistics.median(values), "min": 0.5, "max": 2.5}


def test_a_contenders_entry_compares_it_with_the_study_round_by_round():
    study = [Timing([100.0]), Timing([50.0])]  # 10 and 20 batches/s
    runner = [Timing([25.0]), Timing([20.0])]  # 40 and 50 batches/s
    entry = contender_entry(CONTENDERS[1], runner, study, flops_per_step=10**9, peak=90.0)
    assert entry["batches_per_s"] == [40.0, 50.0] and entry["batches_per_s_median"] == 45.0
    assert entry["batch_ms_median"] == [25.0, 20.0]
    assert entry["vs_study"] == {"median": 3.25, "min": 2.5, "max": 4.0}
    assert entry["gflops_per_s"] == pytest.approx(45.0) and entry["share_of_peak"] == pytest.approx(0.5)
    assert contender_entry(STUDY, study, study, None, 90.0)["vs_study"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    unknown = contender_entry(STUDY, study, study, None, 90.0)
    assert unknown["gflops_per_s"] is None and unknown["share_of_peak"] is None


def test_the_runners_overhead_is_its_typical_batch_over_the_bare_loops():
    runner, bare = lineup("fp32")[1:]
    timings = {runner: [Timing([11.0, 11.0, 30.0], outside_ms=1.0)], bare: [Timing([10.0])]}
    over = runner_overhead(timings)
    assert list(over) == ["fp32"]
    assert over["fp32"]["vs_bare_loop"]["median"] == pytest.approx(12.0 / 10.0 - 1)
    assert over["fp32"]["outside_batch_timer"]["median"] == pytest.approx(1.0 / statistics.fmean([11.0, 11.0, 30.0]))


def record(load_before: float = 0.1, load_after: float = 1.1, bps: tuple[float, ...] = (10.0, 11.0)) -> dict:
    entry = {"precision": "fp32", "batches_per_s": list(bps), "batches_per_s_median": statistics.median(bps),
             "vs_study": {"median": 1.0, "min": 1.0, "max": 1.0}, "flops_per_step": None, "gflops_per_s": None,
             "share_of_peak": None}
    runner = {**entry, "flops_per_step": 2 * 10**9, "gflops_per_s": 21.0, "share_of_peak": 0.25}
    return {
        "arch": "vanilla", "batch_size": 64, "rounds": len(bps), "batches_per_round": 5, "warmup_batches": 1,
        "cuda_graphs": False, "matmul_peak_gflops": {"fp32": 84.0},
        "contenders": {"study": entry, "runner_fp32": runner, "bare_fp32": entry},
        "runner_overhead": {"fp32": {"vs_bare_loop": {"median": 0.05, "min": 0.01, "max": 0.1},
                                     "outside_batch_timer": {"median": 0.02, "min": 0.02, "max": 0.02}}},
        "load_average": {"before": load_before, "after": load_after, "cpus": 2},
        "env": {"device_name": "CPU X", "cpu_model": "CPU X", "torch_threads": 1, "torch": "2.x",
                "allocator": "default"},
    }


def test_a_busy_machine_shows_in_the_load_or_in_rounds_that_disagree():
    assert not machine_was_busy(record())
    assert machine_was_busy(record(load_before=1.5))
    assert not machine_was_busy(record(load_after=2.0))  # this process's own thread
    assert machine_was_busy(record(load_after=2.5))
    assert machine_was_busy(record(bps=(10.0, 16.0)))


def test_the_perf_table_names_the_contenders_and_shows_the_overhead_on_the_runner_only():
    table = tables.perf_table(record())
    console = Console(record=True, width=200)
    console.print(table)
    text = console.export_text()
    assert "vanilla: batches of 64 on CPU X, 2 rounds x 5 batches (+1 warm-up)" in text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│")}
    assert list(rows) == ["study's loop (as published)", "runner", "bare loop (preloaded)"]
    assert rows["runner"].rstrip(" │").endswith("+5.0%") and rows["runner"].count("25%") == 1
    assert rows["bare loop (preloaded)"].rstrip(" │").endswith("-")
    assert "fp32 +5.0% (+1.0% to +10.0%), of which outside its batch timer +2.0%\n" in table.caption
    assert "matmul peak (2048x2048, measured here): fp32 84 GFLOP/s; CPU X, 1 threads, torch 2.x;" in table.caption


def test_perf_settings_are_checked_before_anything_runs():
    PerfConfig(arch="vanilla").validate()
    for bad, match in [({"precision": "fp16"}, "choose from: fp32, bf16"),
                       ({"rounds": 0}, "--rounds must be at least 1"),
                       ({"warmup": -1}, "--warmup must be 0 or more"),
                       ({"peak_seconds": float("inf")}, "--peak-seconds must be finite")]:
        with pytest.raises(UsageError, match=match):
            PerfConfig(arch="vanilla", **bad).validate()
