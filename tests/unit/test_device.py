"""Precision and the divergence check."""

from __future__ import annotations

import pytest
import torch

from bench.device import autocast
from bench.training.run import weights_finite


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
