"""Hyperparameters a network or optimizer cannot take are refused when the config is made, naming the key."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from bench.config import RANGE, Range, apply_overrides
from bench.contract import ArchSpec, GANConfig, at_least, between, positive
from bench.errors import PluginError, UsageError
from bench.registry import default_registry
from helpers import architecture_names


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"lr": "nan"}, "hyperparameter lr must be a positive finite number, got nan"),
        ({"lr": "-1"}, "hyperparameter lr must be a positive finite number, got -1.0"),
        ({"lr": "inf"}, "hyperparameter lr must be a positive finite number, got inf"),
        ({"lr": "0"}, "hyperparameter lr must be a positive finite number, got 0.0"),
        ({"b1": "2"}, "hyperparameter b1 must be a finite number in [0, 1), got 2.0"),
        ({"b2": "1"}, "hyperparameter b2 must be a finite number in [0, 1), got 1.0"),
        ({"latent_dim": "-1"}, "hyperparameter latent_dim must be at least 1, got -1"),
        ({"latent_dim": "0"}, "hyperparameter latent_dim must be at least 1, got 0"),
        ({"bn_eps": "-1"}, "hyperparameter bn_eps must be a positive finite number, got -1.0"),
        ({"batch_size": 0}, "hyperparameter batch_size must be at least 1, got 0"),
    ],
)
def test_values_a_network_or_optimizer_cannot_take_name_the_key(overrides, message):
    with pytest.raises(UsageError) as info:
        default_registry().load("vanilla").make_config(overrides)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "arch, overrides, message",
    [
        ("dcgan", {"dropout": "1"}, "hyperparameter dropout must be a finite number in [0, 1), got 1.0"),
        ("wgan", {"n_critic": "0"}, "hyperparameter n_critic must be at least 1, got 0"),
        ("wgan", {"clip_value": "-0.01"}, "hyperparameter clip_value must be a positive finite number, got -0.01"),
        ("wgan-gp", {"lambda_gp": "-1"}, "hyperparameter lambda_gp must be a finite number of at least 0, got -1.0"),
    ],
)
def test_every_built_in_declares_its_ranges(arch, overrides, message):
    with pytest.raises(UsageError) as info:
        default_registry().load(arch).make_config(overrides)
    assert str(info.value) == message


@pytest.mark.parametrize("arch", architecture_names())
def test_every_numeric_field_of_a_built_in_declares_a_range(arch):
    spec = default_registry().load(arch)
    cfg = spec.make_config()  # the defaults lie in their own ranges
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert RANGE in f.metadata, f"{arch}: {f.name} declares no range"


@dataclass
class PluginConfig(GANConfig):
    scale: float = 1.0  # declares nothing: finite is still required
    horizon: float = field(default=float("inf"), metadata={RANGE: Range(low=0, finite=False)})
    betas: tuple[float, float] = field(default=(0.5, 0.9), metadata=between(0, 1))
    width: int = field(default=8, metadata=at_least(2))
    temperature: float = field(default=1.0, metadata=positive())


def test_a_plugin_declares_ranges_through_field_metadata():
    cfg = PluginConfig()
    assert apply_overrides(cfg, {"horizon": "inf", "betas": "0.0,0.99"}).betas == (0.0, 0.99)
    refused = {
        "scale": ("nan", "hyperparameter scale must be a finite number, got nan"),
        "horizon": ("-1", "hyperparameter horizon must be a number of at least 0, got -1.0"),
        "betas": ("0.5,1.5", "hyperparameter betas must be a finite number in [0, 1), got 0.5,1.5"),
        "width": ("1", "hyperparameter width must be at least 2, got 1"),
        "temperature": ("-inf", "hyperparameter temperature must be a positive finite number, got -inf"),
    }
    for key, (text, message) in refused.items():
        with pytest.raises(UsageError) as info:
            apply_overrides(cfg, {key: text})
        assert str(info.value) == message


def test_values_from_json_or_toml_are_typed():
    cfg = PluginConfig()
    scale = apply_overrides(cfg, {"scale": 2}).scale  # TOML and JSON write 2.0 as 2
    assert scale == 2.0 and isinstance(scale, float)
    assert apply_overrides(cfg, {"betas": [0.1, 0.2]}).betas == (0.1, 0.2)
    for key, value in {"scale": True, "width": 2.5, "betas": [0.1], "temperature": [1.0, 2.0]}.items():
        with pytest.raises(UsageError, match=f"hyperparameter {key}="):
            apply_overrides(cfg, {key: value})


def test_a_default_outside_its_own_range_is_the_plugin_s_fault():
    @dataclass
    class Broken(GANConfig):
        lr: float = field(default=-1.0, metadata=positive())

    spec = ArchSpec("broken-defaults", "a default out of range", 28, Broken, lambda cfg, device: None)
    with pytest.raises(PluginError, match="architecture 'broken-defaults': default hyperparameter lr must be"):
        spec.make_config()
