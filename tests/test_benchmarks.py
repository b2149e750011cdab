"""Hot-path benchmarks (``pytest --benchmark-only``); plain ``pytest`` skips them."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from bench.data import BatchSampler, training_images
from bench.registry import default_registry

from helpers import architecture_names, builtin_registry

CPU = torch.device("cpu")
WEIGHTS = Path(__file__).resolve().parent.parent / "bench" / "weights" / "mnist_classifier.pt"
#: Architectures whose step takes a large fraction of a second on a 2-core CPU: a few fixed
#: rounds instead of pytest-benchmark's calibration, so --benchmark-only stays short.
SLOW = {"dcgan", "sngan"}


def _autocast(precision: str) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", architecture_names())
def test_train_step(benchmark, name, precision):
    """One training step at the architecture's default batch size on the CPU, as the runner
    calls it (under bf16 autocast for bf16); each architecture's two precisions side by side."""
    spec = builtin_registry().load(name)
    cfg = spec.make_config()
    benchmark.group = f"train step: {name} (batch {cfg.batch_size}, cpu)"
    benchmark.extra_info["precision"] = precision
    torch.manual_seed(0)
    gan = spec.build(cfg, CPU)
    real = torch.rand(cfg.batch_size, 1, spec.image_size, spec.image_size) * 2 - 1
    steps = iter(range(10**9))

    def step():
        with _autocast(precision):
            return gan.train_step(real, next(steps))

    for _ in range(3):  # warm-up outside the measurement
        step()
    if name in SLOW:
        benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=1)
    else:
        benchmark(step)


@pytest.mark.parametrize("image_size", [28, 32])
def test_draw_batch(benchmark, image_size):
    """Drawing one batch of 64 from the preloaded training set."""
    benchmark.group = "data: draw one batch of 64"
    sampler = BatchSampler(training_images(image_size, CPU), 64, seed=0)
    batch = benchmark(sampler.next)
    assert batch.shape == (64, 1, image_size, image_size)


@pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"the shipped classifier weights ({WEIGHTS.name}) are not there yet")
def test_evaluate(benchmark):
    """One full evaluation of a vanilla generator (10,000 samples; real statistics cached)."""
    from bench.metrics.evaluator import Evaluator

    benchmark.group = "evaluation: all metrics, 10,000 samples, cpu"
    spec = default_registry().load("vanilla")
    torch.manual_seed(0)
    gan = spec.build(spec.make_config(), CPU)
    evaluator = Evaluator(CPU)
    metrics = benchmark.pedantic(evaluator.evaluate, args=(gan,), rounds=2, iterations=1, warmup_rounds=1)
    assert metrics.fid > 0
