"""Precision and the divergence check."""

from __future__ import annotations

import pytest
import torch

from bench.device import autocast
from bench.training.divergence import weights_finite


def test_bf16_autocast_sees_in_place_weight_updates():
    """wgan reuses its critic after updating and clipping it in place within one step."""
    layer = torch.nn.Linear(4, 1)
    x = torch.ones(2, 4)
    with autocast("bf16", torch.device("cpu")):
        before = layer(x)
        with torch.no_grad():
            layer.weight.add_(1.0)
        after = layer(x)
    assert not torch.allclose(before.float(), after.float())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_weights_finite_finds_one_bad_value_in_any_parameter(bad):
    nets = [torch.nn.Linear(50, 40), torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))]
    assert weights_finite(nets)
    with torch.no_grad():
        nets[1][0].weight[1, 2] = bad
    assert not weights_finite(nets)


def test_default_threads_are_the_usable_cpus_that_other_work_leaves_free(monkeypatch):
    from bench import environment, machine

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(machine, "usable_cpus", lambda: 4)
    for busy, expected in ((0.1, 4), (1.0, 3), (2.6, 1), (3.9, 1), (7.5, 1)):
        monkeypatch.setattr(machine, "busy_cpus", lambda cpus, busy=busy: busy)
        threads, why = environment.default_threads()
        assert threads == expected and f"{busy:.1f} busy" in why
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert environment.default_threads()[1] == "OMP_NUM_THREADS"


def test_busy_cpus_reads_this_machine():
    from bench import machine

    busy = machine.busy_cpus({0}, window_s=0.05)
    assert busy is None or 0.0 <= busy <= 1.0


def test_bf16_without_native_support_warns_once_naming_what_was_found(capsys, monkeypatch):
    from bench import machine

    monkeypatch.setattr(machine, "_warned_bf16", False)
    assert machine.warn_if_bf16_is_emulated({"fpu", "sse2", "avx2", "avx512f"})
    assert machine.warn_if_bf16_is_emulated({"fpu", "avx2"})
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "without native bf16" in err and "avx2, avx512f" in err
    assert not machine.warn_if_bf16_is_emulated({"avx512f", "avx512_bf16"})
    assert not machine.warn_if_bf16_is_emulated({"amx_bf16"})


def test_one_thread_rule_for_runs_timing_phases_and_measurements(monkeypatch):
    from bench import environment

    monkeypatch.setattr(environment, "default_threads", lambda: (3, "the free CPUs"))
    assert environment.run_threads(torch.device("cpu"), 5) == (5, "--threads")
    assert environment.run_threads(torch.device("cpu")) == (3, "the free CPUs")
    assert environment.run_threads(torch.device("meta"))[0] == torch.get_num_threads()  # not a CPU run: torch's own
