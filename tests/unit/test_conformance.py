"""The conformance kit plugin authors run (bench.testing): it passes a good plugin and names each break."""

from __future__ import annotations

import importlib
import sys
import threading
from dataclasses import dataclass, replace

import pytest
import torch

from bench.contract import GAN, ArchSpec, GANConfig
from bench.errors import PluginError
from bench.testing import ContractViolation, check_architecture

from helpers import ema_module


@dataclass
class TinyConfig(GANConfig):
    batch_size: int = 8
    latent_dim: int = 16


class Tiny(GAN):
    """A GAN that keeps the contract; each subclass below breaks one rule."""

    def __init__(self, cfg: TinyConfig, device):
        self.latent_dim = cfg.latent_dim
        self.generator = torch.nn.Sequential(
            torch.nn.Linear(cfg.latent_dim, 784), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 28, 28))
        ).to(device)
        self.discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1)).to(device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=1e-3)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=1e-3)

    def losses(self, real, step):
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)
        fake = self.generator(z)
        d_loss = (torch.nn.functional.softplus(-self.discriminator(real)).mean()
                  + torch.nn.functional.softplus(self.discriminator(fake.detach())).mean())
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()
        g_loss = torch.nn.functional.softplus(-self.discriminator(fake)).mean()
        self.opt_g.zero_grad()
        g_loss.backward()
        self.opt_g.step()
        return d_loss, g_loss

    def train_step(self, real, step):
        d_loss, g_loss = self.losses(real, step)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


TINY = ArchSpec("tiny", "a tiny GAN", 28, TinyConfig, Tiny)


class Attached(Tiny):
    def train_step(self, real, step):
        d_loss, g_loss = self.losses(real, step)
        return {"d_loss": d_loss, "g_loss": g_loss.detach()}


class NaNLater(Tiny):
    def train_step(self, real, step):
        out = super().train_step(real, step)
        return {**out, "g_loss": out["g_loss"] * float("nan")} if step == 2 else out


class FixedBatch(Tiny):
    def train_step(self, real, step):
        z = torch.randn(TinyConfig.batch_size, self.latent_dim)  # ignores a smaller last batch
        loss = (self.discriminator(self.generator(z)) - self.discriminator(real)).mean()
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        self.opt_g.step()
        return {"d_loss": loss.detach(), "g_loss": loss.detach()}


class OutOfRange(Tiny):
    @torch.no_grad()
    def generate(self, z):
        return super().generate(z) * 3


class LeavesEvalMode(Tiny):
    @torch.no_grad()
    def generate(self, z):
        self.generator.eval()
        return self.generator(z)


class NoOptimizers(Tiny):
    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        self.g_optim, self.d_optim = self.opt_g, self.opt_d
        del self.opt_g, self.opt_d


class SharesThroughAClosure(Tiny):
    """Its step reaches the networks through a closure, which copy.deepcopy does not copy."""

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        original = self
        self.step_fn = lambda real, step: Tiny.train_step(original, real, step)

    def train_step(self, real, step):
        return self.step_fn(real, step)


class HoldsALock(Tiny):
    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        self.lock = threading.Lock()


class ForgetsACounter(Tiny):
    """Its step depends on a counter that its checkpoint (extra_state) does not hold."""

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        self.calls = 0

    def train_step(self, real, step):
        self.calls += 1
        out = super().train_step(real * (1 + self.calls / 10), step)
        return out


class Stacks(Tiny):
    """Tiny's step for every seed of a stack at once, as the contract's SeedStackOps allows."""

    def draw_latents(self, stack, n):
        return stack.randn(n, self.latent_dim)  # each seed's own stream

    def stack_step(self, stack, real, step):
        fake = stack.network("generator")(self.draw_latents(stack, real.shape[1]))
        discriminator = stack.network("discriminator")
        d_loss = stack.per_seed(lambda r, f: torch.nn.functional.softplus(-r).mean()
                                + torch.nn.functional.softplus(f).mean(), discriminator(real),
                                discriminator(fake.detach()))
        stack.optimizers()["opt_d"].zero_grad()
        stack.backward(d_loss, "discriminator")
        stack.optimizers()["opt_d"].step()
        g_loss = stack.per_seed(lambda f: torch.nn.functional.softplus(-f).mean(), discriminator(fake))
        stack.optimizers()["opt_g"].zero_grad()
        stack.backward(g_loss, "generator")
        stack.optimizers()["opt_g"].step()
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


class StacksWrongly(Stacks):
    """Its stacked step draws every seed's latents from the global RNG, not from each seed's own."""

    def draw_latents(self, stack, n):
        return torch.randn(stack.size, n, self.latent_dim)


@dataclass(kw_only=True)
class NoDefault(GANConfig):
    hidden: int  # no default


def _raising_build(cfg, device):
    raise RuntimeError("no GPU kernels here")


VIOLATIONS = [
    (replace(TINY, description="two\nlines"), "description must be one non-empty line"),
    (replace(TINY, image_size=64), "image_size must be 28 or 32"),
    (replace(TINY, timed_batches=0), "timed_batches must be a whole number of at least 1, got 0"),
    (replace(TINY, config=NoDefault), "every field of NoDefault needs a default"),
    (replace(TINY, build=_raising_build), "build raised RuntimeError: no GPU kernels here"),
    (replace(TINY, build=NoOptimizers), r"optimizers\(\) must name the optimizers"),
    (replace(TINY, build=Attached), "train_step value 'd_loss' is not detached"),
    (replace(TINY, build=NaNLater), "train_step value 'g_loss' is not finite at step 2"),
    (replace(TINY, build=FixedBatch), "the last batch of an epoch may be smaller than batch_size"),
    (replace(TINY, build=OutOfRange), r"expected \[-1, 1\]"),
    (replace(TINY, build=LeavesEvalMode), "generate must restore the generator's training mode"),
    (replace(TINY, build=SharesThroughAClosure), r"FLOP count's steps on copy.deepcopy\(gan\) changed the original"),
    (replace(TINY, build=HoldsALock), "cannot be deep-copied .*must be deep-copyable"),
    (replace(TINY, build=ForgetsACounter), r"a model restored from state_dict\(\) trains differently"),
    (replace(TINY, build=StacksWrongly), "seed 0 of a stack gives d_loss = .* at step 0, its own run"),
]


def test_a_plugin_that_keeps_the_contract_passes():
    check_architecture(TINY)


def test_a_plugin_whose_stacked_step_is_its_step_passes():
    check_architecture(replace(TINY, build=Stacks))


@pytest.mark.parametrize("spec, message", VIOLATIONS, ids=[m.split(" ")[0] + str(i) for i, (_, m) in
                                                           enumerate(VIOLATIONS)])
def test_each_break_of_the_contract_is_named(spec, message):
    with pytest.raises(ContractViolation, match=f"^architecture 'tiny': .*{message}"):
        check_architecture(spec)


def test_a_violation_is_an_assertion_error_and_a_plugin_error():
    with pytest.raises(AssertionError) as info:
        check_architecture(replace(TINY, build=Attached))
    assert isinstance(info.value, PluginError) and info.value.plugin == "tiny"


@pytest.fixture
def ema_specs(tmp_path, monkeypatch):
    """The EMA test plugin, declaring its sampling state and not."""
    monkeypatch.syspath_prepend(str(tmp_path))
    specs = {}
    for declared in (True, False):
        module = f"ema_arch_{'declared' if declared else 'undeclared'}"
        (tmp_path / f"{module}.py").write_text(ema_module("ema", declared=declared))
        specs[declared] = importlib.import_module(module).SPEC
    yield specs
    for module in ("ema_arch_declared", "ema_arch_undeclared"):
        sys.modules.pop(module, None)


def test_generate_needing_more_than_the_generator_must_declare_a_sampling_state(ema_specs):
    """The example plugin's README suggests an EMA; without its sampling state bench eval scores another model."""
    check_architecture(ema_specs[True])
    with pytest.raises(ContractViolation, match=r"generate\(\) depends on state beyond generator .*sampling_state"):
        check_architecture(ema_specs[False])

