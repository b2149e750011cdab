"""Every registered architecture honours the plugin contract (timm-style registry walk)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from bench.contract import GAN, GANConfig, check_samples, check_step_output, count_parameters
from bench.errors import PluginError, UsageError
from bench.registry import default_registry

from bench.testing import check_architecture

from helpers import REPO, architecture_names, builtin_registry


@pytest.mark.parametrize("name", architecture_names())
def test_one_step_and_samples(name):
    spec = builtin_registry().load(name)
    assert spec.name == name and spec.description and "\n" not in spec.description
    assert spec.image_size in (28, 32)
    cfg = spec.make_config({"batch_size": 8})
    assert isinstance(cfg, GANConfig) and dataclasses.is_dataclass(cfg)
    torch.manual_seed(0)
    gan = spec.build(cfg, torch.device("cpu"))
    assert isinstance(gan, GAN)
    before = {k: v.clone() for k, v in gan.generator.state_dict().items()}
    real = torch.rand(8, 1, spec.image_size, spec.image_size) * 2 - 1
    for step in range(2):
        out = gan.train_step(real, step)
        check_step_output(name, out)
    after = gan.generator.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "two steps did not update the generator"
    z = gan.sample_latent(5, torch.Generator().manual_seed(0))
    assert z.shape == (5, cfg.latent_dim)
    images = gan.generate(z)
    check_samples(name, images, 5, spec.image_size)
    assert gan.generator.training, "generate must restore training mode"
    assert set(gan.networks()) >= {"generator", "discriminator"}
    assert gan.optimizers(), "optimizers() must name the optimizers (checkpoints need them)"


@pytest.mark.parametrize("name", architecture_names())
def test_builtin_passes_the_conformance_kit_plugin_authors_run(name):
    check_architecture(builtin_registry().load(name))


def test_gan_bench_walks_its_built_ins_only_and_the_readme_has_a_row_for_each():
    """A third-party plugin is its author's to check (bench.testing); gan-bench's tests walk its own: the
    entry points of its pyproject.toml, each with its row in the README's table of architectures."""
    table = (REPO / "README.md").read_text().split("## The architectures", 1)[1].split("\n## ", 1)[0]
    assert architecture_names() == sorted(re.findall(r"^\| `([\w-]+)` \|", table, re.MULTILINE))


def test_vanilla_parameter_counts():
    spec = default_registry().load("vanilla")
    gan = spec.build(spec.make_config(), torch.device("cpu"))
    assert count_parameters(gan.generator) == 1_510_032
    assert count_parameters(gan.discriminator) == 533_505


def test_vanilla_keeps_the_study_quirks():
    spec = default_registry().load("vanilla")
    gan = spec.build(spec.make_config(), torch.device("cpu"))
    norms = [m for m in gan.generator.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 3 and all(m.eps == 0.8 for m in norms)
    assert isinstance(list(gan.discriminator.modules())[-1], torch.nn.Sigmoid)
    assert [type(o).__name__ for o in gan.optimizers().values()] == ["Adam", "Adam"]
    assert gan.opt_g.defaults["lr"] == 2e-4 and gan.opt_g.defaults["betas"] == (0.5, 0.999)


def test_overrides_are_typed():
    spec = default_registry().load("vanilla")
    cfg = spec.make_config({"lr": "1e-3", "batch_size": "32"})
    assert cfg.lr == 1e-3 and cfg.batch_size == 32
    with pytest.raises(UsageError, match="unknown hyperparameter 'lrr'"):
        spec.make_config({"lrr": "1"})
    with pytest.raises(UsageError, match="not a valid float"):
        spec.make_config({"lr": "fast"})


@pytest.mark.parametrize(
    "out, message",
    [
        ([1.0], "expected a dict"),
        ({"d_loss": torch.tensor(1.0)}, "did not return g_loss"),
        ({"d_loss": torch.tensor(1.0), "g_loss": torch.ones(3)}, "'g_loss' is not a scalar"),
        ({"d_loss": torch.tensor(1.0, requires_grad=True) * 2, "g_loss": torch.tensor(1.0)}, "not detached"),
        ({"d_loss": torch.tensor(float("nan")), "g_loss": torch.tensor(1.0)}, "not finite"),
    ],
)
def test_step_output_violations_name_the_plugin(out, message):
    with pytest.raises(PluginError, match=f"architecture 'bad'.*{message}"):
        check_step_output("bad", out)


def test_sample_violations():
    with pytest.raises(PluginError, match="shape"):
        check_samples("bad", torch.zeros(2, 1, 28, 28), 2, 32)
    with pytest.raises(PluginError, match=r"\[-1, 1\]"):
        check_samples("bad", torch.full((2, 1, 28, 28), 3.0), 2, 28)
