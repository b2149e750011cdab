"""Stacked seeds (bench.training.stack): a stack of S seeds is S single runs, computed as one model.

The proof of the math walks every built-in: in float64, a stack of 3 seeds against the three
single runs ``bench run --seed s`` makes (built after ``torch.manual_seed(s)``, stepped by the
architecture's own ``train_step`` on the same batches, drawing from the global RNG).
"""

from __future__ import annotations

import copy
import io
import math
import re
import sys
from pathlib import Path
from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn

from bench.architectures.losses import bce_generator_loss
from bench.architectures.steps import GeneratorFirstGAN
from bench.architectures.vanilla import Vanilla, VanillaConfig
from bench.architectures.wgan import WGAN
from bench.contract import GAN, ArchSpec
from bench.registry import default_registry
from bench.testing import check_stacking
from bench.training.stack import SeedStack, StackError, _stacked_optimizer, stackable

from helpers import architecture_names

CPU = torch.device("cpu")
PLUGIN_SRC = Path(__file__).resolve().parents[2] / "examples" / "plugin" / "src"
SEEDS = (0, 1, 2)
STEPS = 20
#: Small batches keep the float64 runs affordable; the 32x32 conv nets get the smallest that
#: BatchNorm still normalises meaningfully.
BATCH = {"dcgan": 4, "sngan": 4}
#: wgan's schedule counts batches within an epoch: 7 per epoch puts generator steps at batches
#: 0, 5, 7, 12, 14, 19 (a restart mid-cycle included).
BATCHES_PER_EPOCH = 7


def single_run(spec: ArchSpec, hparams, seed: int) -> tuple[GAN, torch.Tensor]:
    """Seed ``seed``'s model as ``bench run`` builds it, and the global RNG state its steps start from."""
    torch.manual_seed(seed)
    gan = spec.build(hparams, CPU)
    gan.batches_per_epoch = BATCHES_PER_EPOCH
    return gan, torch.get_rng_state()


def batches(n: int, seeds: int, batch: int, size: int, seed: int = 1) -> list[torch.Tensor]:
    """``n`` stacked batches (S, B, 1, size, size) of images in [-1, 1]: one batch per seed."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(seeds, batch, 1, size, size, generator=gen) * 2 - 1).to(torch.get_default_dtype())
            for _ in range(n)]


def make_stack(name: str, seeds=SEEDS, **overrides) -> SeedStack:
    """A stack of ``seeds`` of built-in ``name`` on the CPU, at the test's batch size."""
    spec = default_registry().load(name)
    stack = SeedStack(spec, spec.make_config({"batch_size": BATCH.get(name, 8), **overrides}), seeds, CPU)
    stack.batches_per_epoch = BATCHES_PER_EPOCH
    return stack


def bias_before_batchnorm(net: nn.Module) -> set[str]:
    """Parameter names of the biases that feed a BatchNorm directly (in a Sequential)."""
    names = set()
    for prefix, m in net.named_modules():
        if isinstance(m, nn.Sequential):
            for (i, a), b in zip(enumerate(m), list(m)[1:], strict=False):
                if isinstance(a, (nn.Linear, nn.Conv2d)) and isinstance(b, nn.modules.batchnorm._BatchNorm):
                    names.add(f"{prefix}.{i}.bias" if prefix else f"{i}.bias")
    return names


def assert_state_matches(ours: nn.Module, theirs: nn.Module, noise_bound: float, what: str) -> None:
    """Every parameter and buffer within 1e-9 of the tensor's scale (integers equal).

    Except the biases that feed a BatchNorm: BatchNorm subtracts the batch mean, so their true
    gradient is exactly zero and what both sides compute is float64 rounding noise (~1e-15),
    which Adam divides by its eps (1e-8) into steps of ~lr * 1e-7. Those must stay within
    ``noise_bound`` of each other rather than agree.
    """
    noise = bias_before_batchnorm(theirs)
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        if not b[k].is_floating_point():
            assert torch.equal(a[k], b[k]), f"{what} {k}"
        elif k in noise:
            assert (a[k] - b[k]).abs().max() <= noise_bound, f"{what} {k}"
        else:
            scale = float(b[k].abs().max())
            torch.testing.assert_close(a[k], b[k], rtol=1e-9, atol=1e-9 * scale,
                                       msg=lambda m, k=k: f"{what} {k}: {m}")


@pytest.mark.parametrize("name", architecture_names())
def test_a_stack_is_its_seeds_single_runs_in_float64(name, float64):
    """20 steps of a stack of 3 seeds against the 3 single runs: every output of every step to 1e-9
    relative, the final networks to 1e-9 of their scale, each seed's random stream bit for bit
    (the same draws, in the same order: latents, dropout masks, penalty weights), optimizer step
    counts, and each seed's view generating what its single run generates."""
    stack = make_stack(name)
    spec, hparams = stack.spec, stack.config
    lr = hparams.lr
    data = batches(STEPS, len(SEEDS), hparams.batch_size, spec.image_size)
    outs = [stack.train_step(real, step) for step, real in enumerate(data)]
    z = torch.randn(5, stack.gans[0].latent_dim, generator=torch.Generator().manual_seed(3))
    for i, seed in enumerate(SEEDS):
        gan, rng = single_run(spec, hparams, seed)
        torch.set_rng_state(rng)
        for step, real in enumerate(data):
            out = gan.train_step(real[i], step)
            assert out.keys() == outs[step].keys()
            for k, v in out.items():
                torch.testing.assert_close(outs[step][k][i], v, rtol=1e-9, atol=1e-12,
                                           msg=lambda m, k=k, step=step, seed=seed: f"seed {seed} step {step} {k}: {m}")
        assert torch.equal(stack.seed_rng_state(i)["cpu"], torch.get_rng_state()), f"seed {seed}'s random stream"
        view = stack.seed(i)
        for net in ("generator", "discriminator"):
            assert_state_matches(view.networks()[net], gan.networks()[net], 2 * STEPS * lr * 1e-7, f"seed {seed} {net}")
        for opt_name, opt in gan.optimizers().items():
            steps = [s.get("step") for s in opt.state_dict()["state"].values()]
            assert steps == [s.get("step") for s in view.optimizers()[opt_name].state_dict()["state"].values()]
        # Images in [-1, 1]: within 1e-9 of their scale.
        torch.testing.assert_close(view.generate(z), gan.generate(z), rtol=1e-9, atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["vanilla", "dcgan", "wgan-gp"])
def test_a_stack_is_its_seeds_single_runs_on_cuda(name, float64):
    """On CUDA each seed's stream is a CUDA generator continuing from the device's global one: the
    latents, Dropout2d masks and penalty weights are the single run's draws."""
    device = torch.device("cuda")
    spec = default_registry().load(name)
    hparams = spec.make_config({"batch_size": 8})
    stack = SeedStack(spec, hparams, SEEDS, device)
    data = [real.to(device) for real in batches(5, len(SEEDS), 8, spec.image_size)]
    outs = [stack.train_step(real, step) for step, real in enumerate(data)]
    for i, seed in enumerate(SEEDS):
        torch.manual_seed(seed)
        gan = spec.build(hparams, device)
        for step, real in enumerate(data):
            for k, v in gan.train_step(real[i], step).items():
                torch.testing.assert_close(outs[step][k][i], v, rtol=1e-9, atol=1e-12)
        assert torch.equal(stack.seed_rng_state(i)["cuda"], torch.cuda.get_rng_state(device))


# Stopping a diverged seed ------------------------------------------------------------------------


def assert_same(a, b, what: str = "") -> None:
    """Bit for bit, NaN equal to NaN, through nested dicts and lists."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            assert_same(a[k], b[k], f"{what}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{what}[{i}]")
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{what}: {m}")
    else:
        assert a == b, what


def seed_state(stack: SeedStack, i: int) -> dict:
    return {"gan": copy.deepcopy(stack.seed(i).state_dict()), "rng": stack.seed_rng_state(i)}


@torch.no_grad()
def poison(stack: SeedStack, i: int) -> None:
    """Make seed ``i`` diverge: every weight of its networks NaN."""
    for net in stack.nets.values():
        for p in net.params.values():
            p[i].fill_(math.nan)


@pytest.mark.parametrize("name", ["vanilla", "wgan-gp", "dcgan"])
def test_a_stopped_seed_stops_changing_and_never_reaches_the_others(name):
    """A seed gone NaN (vanilla's BCE would raise on it; wgan-gp differentiates through it; dcgan's
    BatchNorm and dropout run on it) yields NaN outputs without stopping the stack; once stopped,
    its whole state stays as it was; the other seeds are bit for bit those of a stack without
    the sickness, at every step."""
    sick, healthy = make_stack(name), make_stack(name)
    data = batches(8, len(SEEDS), BATCH.get(name, 8), sick.spec.image_size)
    for step, real in enumerate(data):
        if step == 3:
            poison(sick, 1)
        if step == 5:
            sick.stop(1)
            frozen = seed_state(sick, 1)
        out, ref = sick.train_step(real, step), healthy.train_step(real, step)
        if step >= 3:
            assert math.isnan(sick.split(out)[1]["d_loss"])
            assert sick.finite_weights() == [True, False, True]
        for i in (0, 2):
            assert_same({k: v[i] for k, v in out.items()}, {k: v[i] for k, v in ref.items()}, f"step {step}")
    assert sick.active == [True, False, True]
    assert_same(seed_state(sick, 1), frozen, "stopped seed")
    for i in (0, 2):
        assert_same(seed_state(sick, i), seed_state(healthy, i), f"seed {SEEDS[i]}")


def test_stopped_seeds_leave_the_others_as_a_stack_without_them():
    """Bit for bit the stack of the remaining seeds only: every seed's slice is computed by the same
    per-batch kernels whatever the stack's size (here on the MLP nets)."""
    three, two = make_stack("wgan-gp"), make_stack("wgan-gp", seeds=(0, 2))
    three.stop(1)
    for step, real in enumerate(batches(6, 3, 8, 28)):
        out, ref = three.train_step(real, step), two.train_step(real[[0, 2]], step)
        assert_same({k: v[[0, 2]] for k, v in out.items()}, ref, f"step {step}")
        assert out["d_loss"][1].isnan()
    for i, j in ((0, 0), (2, 1)):
        assert_same(seed_state(three, i), seed_state(two, j), f"seed {SEEDS[i]}")


# Checkpoints -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["wgan", "dcgan"])
def test_the_stack_state_dict_continues_bit_exactly(name):
    """Saved (as a checkpoint file is, weights only) and loaded into a fresh stack between two of
    wgan's generator steps (its carried loss), with dcgan's dropout streams and BatchNorm
    statistics, and with a stopped seed: the continuation is bit for bit the uninterrupted one."""
    a = make_stack(name)
    data = batches(9, len(SEEDS), BATCH.get(name, 8), a.spec.image_size)
    for step in range(4):
        if step == 3:
            a.stop(2)
        a.train_step(data[step], step)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = make_stack(name)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    assert b.active == a.active == [True, True, False]
    for step in range(4, 9):
        assert_same(b.train_step(data[step], step), a.train_step(data[step], step), f"step {step}")
    assert_same(b.state_dict(), a.state_dict())


def run_single(gan: GAN, rng: torch.Tensor, data: list[torch.Tensor], i: int, steps: range) -> tuple[list, Tensor]:
    """Steps ``steps`` of a single run on batches ``data[step][i]`` from global RNG state ``rng``:
    its outputs and its RNG state after them."""
    torch.set_rng_state(rng)
    outs = [gan.train_step(data[step][i], step) for step in steps]
    return outs, torch.get_rng_state()


def test_a_seeds_checkpoint_moves_between_its_single_run_and_a_stack(float64):
    """Seed i's ``gan`` and ``rng`` (what a single run's checkpoint holds) resume as its single run,
    and single runs' checkpoints resume as a stack: each continues as the other does."""
    stack = make_stack("vanilla")
    spec, hparams = stack.spec, stack.config
    data = batches(6, len(SEEDS), 8, 28)
    first, then = range(3), range(3, 6)
    for step in first:
        stack.train_step(data[step], step)
    singles = []
    for i, seed in enumerate(SEEDS):
        gan, rng = single_run(spec, hparams, seed)
        singles.append((gan, run_single(gan, rng, data, i, first)[1]))
    from_stack = [seed_state(stack, i) for i in range(len(SEEDS))]
    from_singles = make_stack("vanilla")
    from_singles.load_state_dict({"seeds": list(SEEDS), "states": [
        {"gan": copy.deepcopy(gan.state_dict()), "rng": {"cpu": rng}} for gan, rng in singles]})

    stacked = [stack.train_step(data[step], step) for step in then]
    restacked = [from_singles.train_step(data[step], step) for step in then]
    for i, seed in enumerate(SEEDS):
        resumed, _ = single_run(spec, hparams, seed)
        resumed.load_state_dict(from_stack[i]["gan"])
        pairs = {"stack resumed as a single run": (run_single(resumed, from_stack[i]["rng"]["cpu"], data, i, then)[0],
                                                   stacked),
                 "single run resumed in a stack": (run_single(*singles[i], data, i, then)[0], restacked)}
        for what, (single, stack_outs) in pairs.items():
            for step, ours, theirs in zip(then, stack_outs, single, strict=True):
                for k, v in theirs.items():
                    torch.testing.assert_close(ours[k][i], v, rtol=1e-9, atol=1e-12,
                                               msg=lambda m, what=what, k=k, step=step, seed=seed: (
                                                   f"seed {seed} {what}, step {step} {k}: {m}"))


# What can be stacked -----------------------------------------------------------------------------


class OwnStep(GAN):
    """A plugin with a step of its own (as the example plugin): not stackable."""

    def train_step(self, real, step):
        return {}


class ShapeWithOwnStep(GeneratorFirstGAN):
    """Built on a shape but replacing its step: the shape's stacked step would not be its step."""

    def train_step(self, real, step):
        return super().train_step(real, step)


class PenaltyWithoutStackedPenalty(WGAN):
    """A WGAN variant whose critic loss has no stacked counterpart."""

    def critic_loss(self, real, fake, d_real, d_fake):
        return super().critic_loss(real, fake, d_real, d_fake)


class OptedOut(Vanilla):
    not_stackable = "it says so"


class AlphaDropoutCritic(Vanilla):
    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        self.discriminator.model.append(nn.AlphaDropout(0.1))


class CumulativeBatchNorm(Vanilla):
    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        self.generator.model.append(nn.BatchNorm1d(784, momentum=None))


class LBFGSCritic(Vanilla):
    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        self.opt_d = torch.optim.LBFGS(self.discriminator.parameters())


class Hooked(Vanilla):
    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        self.generator.register_forward_hook(lambda *args: None)


class RandomLoss(Vanilla):
    """A loss drawing random numbers of its own: fine for a single run, not per seed under vmap."""

    generator_loss = staticmethod(lambda d_fake: bce_generator_loss(d_fake) + 0 * torch.rand(()))


def spec_of(cls: type) -> ArchSpec:
    return ArchSpec(cls.__name__.lower(), "a test architecture", 28, VanillaConfig, cls)


def test_every_built_in_can_be_stacked_and_asking_leaves_the_rng_alone():
    before = torch.get_rng_state()
    for name in architecture_names():
        assert stackable(default_registry().load(name)) is None, name
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize(("cls", "reason"), [
    (OwnStep, "OwnStep defines train_step without stack_step"),
    (ShapeWithOwnStep, "ShapeWithOwnStep defines train_step without stack_step"),
    (PenaltyWithoutStackedPenalty, "PenaltyWithoutStackedPenalty defines critic_loss without stack_critic_loss"),
    (OptedOut, "it says so"),
    (AlphaDropoutCritic, "discriminator.model.7 (AlphaDropout) draws masks"),
    (CumulativeBatchNorm, "generator.model.13: BatchNorm with momentum=None"),
    (LBFGSCritic, "optimizer opt_d (LBFGS) is not known"),
    (Hooked, "generator (MLPGenerator) has hooks"),
])
def test_what_cannot_be_stacked_is_found_up_front_with_its_reason(cls, reason):
    found = stackable(spec_of(cls))
    assert found is not None and reason in found, found
    if issubclass(cls, Vanilla):  # buildable: a stack of it refuses to be made
        with pytest.raises(StackError, match=f"cannot be stacked: .*{re.escape(reason)}"):
            SeedStack(spec_of(cls), VanillaConfig(batch_size=4), (0, 1), CPU)


def test_the_example_plugin_stacks_through_the_contract_and_a_subclass_with_its_own_step_says_why(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    try:
        from gan_bench_mlp_hinge import SPEC, MLPHinge
        assert stackable(SPEC) is None
        check_stacking(SPEC, SPEC.make_config({"batch_size": 8}))  # each seed as its own run, float64

        class WithEMA(MLPHinge):  # the README's EMA example: its own train_step, no stack_step
            def train_step(self, real, step):
                return super().train_step(real, step)

        assert "WithEMA defines train_step without stack_step" in stackable(replace(SPEC, build=WithEMA))
    finally:
        sys.modules.pop("gan_bench_mlp_hinge", None)


def test_what_only_running_shows_is_found_on_the_first_stacked_step():
    """A loss drawing random numbers of its own cannot run per seed under vmap: a StackError on the
    first step, so the seeds can run separately."""
    spec = spec_of(RandomLoss)
    assert stackable(spec) is None
    stack = SeedStack(spec, spec.make_config({"batch_size": 4}), (0, 1), CPU)
    with pytest.raises(StackError, match="first stacked step raised RuntimeError"):
        stack.train_step(torch.zeros(2, 4, 1, 28, 28), 0)


# Precision and optimizers ------------------------------------------------------------------------


@pytest.mark.parametrize("name", architecture_names())
def test_a_stack_trains_under_cpu_bf16_autocast(name):
    """The runner's bf16 autocast over a stacked step (fp32 master weights); no exactness asked."""
    stack = make_stack(name, batch_size=4)
    for step, real in enumerate(batches(2, len(SEEDS), 4, stack.spec.image_size)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = stack.train_step(real, step)
        assert all(v.shape == (len(SEEDS),) and torch.isfinite(v).all() for v in out.values()), out
    for net in stack.nets.values():
        assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in net.params.values())
    assert stack.seed(1).generate(torch.randn(2, 100)).dtype == torch.float32


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.Adam(ps, lr=2e-4, betas=(0.5, 0.999), fused=True),
    lambda ps: torch.optim.Adam(ps, lr=2e-4, betas=(0.5, 0.999), foreach=False),
    lambda ps: torch.optim.Adam(ps, lr=1e-4, betas=(0.5, 0.9), foreach=True),
    lambda ps: torch.optim.RMSprop(ps, lr=5e-5),
], ids=["adam-fused", "adam-for-loop", "adam-foreach", "rmsprop"])
def test_one_optimizer_over_the_stack_is_each_seeds_own_bit_for_bit(make):
    """Fused, for-loop and foreach Adam and RMSprop update element by element: over stacked tensors
    (sizes that are no multiple of a vector width included) they give each seed its own update."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(37, 5), (129,), (3, 3, 3, 3)]
    seeds = [[torch.randn(s, generator=gen).requires_grad_() for s in shapes] for _ in range(3)]
    own = [make(ps) for ps in seeds]
    stacked = {id(p): torch.stack([ps[j].detach() for ps in seeds]).requires_grad_() for j, p in enumerate(seeds[0])}
    opt = _stacked_optimizer(own[0], stacked)
    assert type(opt) is type(own[0]) and opt.defaults == own[0].defaults
    for _ in range(5):
        grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in seeds]
        for ps, gs, o in zip(seeds, grads, own, strict=True):
            for p, g in zip(ps, gs, strict=True):
                p.grad = g.clone()
            o.step()
        for j, p in enumerate(seeds[0]):
            stacked[id(p)].grad = torch.stack([gs[j] for gs in grads])
        opt.step()
    for i, ps in enumerate(seeds):
        for j, p in enumerate(ps):
            assert torch.equal(stacked[id(seeds[0][j])][i], p.detach())
