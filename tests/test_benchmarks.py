"""Hot-path benchmarks (``pytest --benchmark-only``); plain ``pytest`` skips them."""

from __future__ import annotations

import pytest
import torch

from bench.data import BatchSampler, training_images
from bench.registry import default_registry

from conftest import architecture_names


@pytest.mark.parametrize("name", architecture_names())
def test_train_step(benchmark, name):
    """One training step at the architecture's default batch size, on the CPU."""
    benchmark.group = "train step (default batch size, cpu, fp32)"
    spec = default_registry().load(name)
    cfg = spec.make_config()
    torch.manual_seed(0)
    gan = spec.build(cfg, torch.device("cpu"))
    real = torch.rand(cfg.batch_size, 1, spec.image_size, spec.image_size) * 2 - 1
    for step in range(3):  # warm-up outside the measurement
        gan.train_step(real, step)
    steps = iter(range(3, 10**9))
    benchmark(lambda: gan.train_step(real, next(steps)))


@pytest.mark.parametrize("image_size", [28, 32])
def test_draw_batch(benchmark, image_size):
    """Drawing one batch of 64 from the preloaded training set."""
    benchmark.group = "data: draw one batch of 64"
    sampler = BatchSampler(training_images(image_size, torch.device("cpu")), 64, seed=0)
    batch = benchmark(sampler.next)
    assert batch.shape == (64, 1, image_size, image_size)
