"""CUDA code paths; skipped where there is no CUDA, never deleted."""

from __future__ import annotations

import math

import pytest
import torch

from bench.config import RunConfig
from bench.errors import UsageError
from bench.layout import Status
from bench.registry import default_registry
from bench.training.cuda_graphs import StepGraph
from bench.training.runner import Runner
from helpers import architectures_where

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _run(tmp_path, arch="vanilla", **kw):
    cfg = RunConfig(arch, steps=40, log_every=10, sample_every=0, eval=False, device="cuda", out=str(tmp_path), **kw)
    runner = Runner(cfg, default_registry().load(arch))
    return runner, runner.train()


def test_cuda_run_times_with_events_and_completes(tmp_path):
    runner, record = _run(tmp_path)
    assert record.status is Status.COMPLETED and record.env.gpu
    times = runner.run.state.times_ms
    assert runner.loop.timer.cuda and len(times) == 40 and all(t > 0 for t in times)
    assert record.peak_memory_bytes > 0


@pytest.mark.parametrize("arch", architectures_where(lambda gan: gan.graph_safe))
def test_cuda_graphs_replay_the_same_training(tmp_path, arch):
    eager, _ = _run(tmp_path / "eager", arch)
    graphed, record = _run(tmp_path / "graph", arch, cuda_graphs=True)
    assert record.status is Status.COMPLETED
    assert graphed.graphs.graph is not None, "the step was never captured"
    history = graphed.run.state.history
    assert all(math.isfinite(h["d_loss"]) and math.isfinite(h["g_loss"]) for h in history)
    # The eager warm-up steps are the same computation; later steps draw from the graph-safe RNG.
    for a, b in zip(eager.run.state.history[: StepGraph.WARMUP], history[: StepGraph.WARMUP], strict=True):
        assert a["d_loss"] == pytest.approx(b["d_loss"], rel=1e-4)


def test_cuda_graphs_refuse_step_dependent_architectures(tmp_path):
    with pytest.raises(UsageError, match="graph_safe"):
        _run(tmp_path, "wgan", cuda_graphs=True)


def test_bf16_autocast_on_cuda(tmp_path):
    _, record = _run(tmp_path, precision="bf16")
    assert record.status is Status.COMPLETED and record.config.precision == "bf16"
