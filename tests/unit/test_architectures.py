"""The built-in comparison architectures (dcgan, wgan, wgan-gp, lsgan, sngan) and the example plugin, and
that the suite's default steps compute the study's math (bench.perf.study is the study's loop written out)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import inspect
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from bench.architectures.losses import gradient_penalty
from bench.architectures.nets import ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator, upsample_conv
from bench.architectures.steps import GeneratorFirstGAN
from bench.contract import GAN, check_samples, check_step_output, count_parameters
from bench.perf.study import study_model, study_step
from bench.registry import GROUP, Registry, default_registry, discover

from bench.testing import check_architecture

from helpers import architecture_names, architectures_where, builtin_registry, make_dist

REPO = Path(__file__).resolve().parents[2]
PLUGIN_SRC = REPO / "examples" / "plugin" / "src"
CPU = torch.device("cpu")

ARCHS = ["dcgan", "wgan", "wgan-gp", "lsgan", "sngan"]
MLP_COUNTS = (1_510_032, 533_505)  # vanilla's networks
PARAMETER_COUNTS = {
    "dcgan": (1_049_985, 98_113),
    "wgan": MLP_COUNTS,
    "wgan-gp": MLP_COUNTS,
    "lsgan": MLP_COUNTS,
    # dcgan's generator; dcgan's D without its 3 BatchNorm2d layers (448 parameters).
    # Spectral norm's u and v vectors are buffers, not parameters.
    "sngan": (1_049_985, 97_665),
}


def build(name: str, **overrides) -> tuple[GAN, int]:
    """Build ``name`` on the CPU with a fixed seed; return it and its image size."""
    torch.manual_seed(0)
    spec = default_registry().load(name)
    return spec.build(spec.make_config(overrides), CPU), spec.image_size


def real_batch(n: int, size: int) -> torch.Tensor:
    return torch.rand(n, 1, size, size) * 2 - 1


def snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(a, p) for a, p in zip(before, module.parameters(), strict=True))


@pytest.mark.parametrize("name", ARCHS)
def test_parameter_counts(name):
    gan, _ = build(name)
    assert (count_parameters(gan.generator), count_parameters(gan.discriminator)) == PARAMETER_COUNTS[name]


@pytest.mark.parametrize("name", ARCHS)
def test_two_steps_and_samples_keep_the_contract(name):
    gan, size = build(name, batch_size=8)
    real = real_batch(8, size)
    for step in range(2):
        out = gan.train_step(real, step)
        check_step_output(name, out)
        assert all(math.isfinite(float(v)) for v in out.values())
        assert {"d_real", "d_fake"} <= out.keys()
    check_samples(name, gan.generate(gan.sample_latent(3)), 3, size)


def test_dcgan_initialises_like_the_study():
    gan, _ = build("dcgan")
    convs = [m for net in gan.networks().values() for m in net.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for net in gan.networks().values() for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 7 and len(norms) == 6
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert abs(weights.std().item() - 0.02) < 0.001
    assert all(m.bias.abs().max() == 0 for m in norms)
    assert abs(torch.cat([m.weight for m in norms]).mean().item() - 1) < 0.01
    assert sum(isinstance(m, nn.Dropout2d) for m in gan.discriminator.modules()) == 4


def test_wgan_steps_the_generator_every_fifth_batch_and_clips_the_critic():
    gan, _ = build("wgan", batch_size=8)
    real = real_batch(8, 28)
    for step in range(7):
        before = snapshot(gan.generator)
        out = gan.train_step(real, step)
        assert changed(before, gan.generator) == (step % 5 == 0), f"step {step}"
        assert all(p.abs().max() <= 0.01 for p in gan.discriminator.parameters())
        if step == 0:
            g_loss = out["g_loss"]
        elif step < 5:
            assert out["g_loss"] is g_loss  # the latest generator loss, not a new one


def test_wgan_resumed_between_generator_steps_reports_this_batchs_generator_loss():
    gan, _ = build("wgan", batch_size=8)
    before = snapshot(gan.generator)
    out = gan.train_step(real_batch(8, 28), 3)
    check_step_output("wgan", out)
    assert not changed(before, gan.generator)
    assert torch.equal(out["g_loss"], -out["d_fake"])


def test_wgan_gp_penalises_instead_of_clipping():
    gan, _ = build("wgan-gp", batch_size=8)
    real = real_batch(8, 28)
    for step in range(2):
        before = snapshot(gan.generator)
        out = gan.train_step(real, step)
        assert changed(before, gan.generator) == (step == 0)
    assert math.isfinite(float(out["gp"])) and float(out["gp"]) >= 0
    assert max(p.abs().max() for p in gan.discriminator.parameters()) > 0.01
    description = default_registry().load("wgan-gp").description.lower()
    assert "same networks as wgan" in description and "lipschitz" in description


def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm_minus_one_squared():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))
    with torch.no_grad():
        critic[1].weight.copy_(torch.tensor([[3.0, 0.0, 4.0, 0.0]]))  # norm 5
    gp = gradient_penalty(critic, torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2))
    assert torch.allclose(gp, torch.tensor(16.0))
    assert gp.requires_grad  # differentiable, so it can train the critic


def test_sngan_discriminator_is_spectrally_normalized_without_batchnorm_or_dropout():
    gan, _ = build("sngan")
    layers = [m for m in gan.discriminator.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 5
    for layer in layers:
        assert parametrize.is_parametrized(layer, "weight")
        assert [type(p).__name__ for p in layer.parametrizations.weight] == ["_SpectralNorm"]
    banned = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout2d, nn.Sigmoid)
    assert not any(isinstance(m, banned) for m in gan.discriminator.modules())


def test_shared_networks_are_reused_not_copied():
    for name in ("wgan", "wgan-gp", "lsgan"):
        gan, _ = build(name)
        assert type(gan.generator) is MLPGenerator and type(gan.discriminator) is MLPDiscriminator, name
    for name in ("dcgan", "sngan"):
        gan, _ = build(name)
        assert type(gan.generator) is ConvGenerator and type(gan.discriminator) is ConvDiscriminator, name
    # An architecture module holds its config, its GAN and its spec: no networks of its own.
    for name in ARCHS:
        module = sys.modules[default_registry().load(name).build.__module__]
        own = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
        assert not [c for c in own if issubclass(c, nn.Module)], name


def test_example_plugin_is_discovered_loaded_and_trained(tmp_path, monkeypatch):
    info = tmp_path / "gan_bench_mlp_hinge-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gan-bench-mlp-hinge\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\nmlp-hinge = gan_bench_mlp_hinge:SPEC\n")
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        entries = discover(md.distributions(path=[str(tmp_path)]))
        assert [(e.name, e.package) for e in entries] == [("mlp-hinge", "gan-bench-mlp-hinge")]
        assert "gan_bench_mlp_hinge" not in sys.modules  # found without importing
        spec = Registry(entries).load("mlp-hinge")
        torch.manual_seed(0)
        gan = spec.build(spec.make_config({"batch_size": "8"}), CPU)
        check_step_output(spec.name, gan.train_step(real_batch(8, spec.image_size), 0))
        check_samples(spec.name, gan.generate(gan.sample_latent(2)), 2, spec.image_size)
    finally:
        sys.modules.pop("gan_bench_mlp_hinge", None)


@pytest.fixture
def example_plugin(tmp_path, monkeypatch):
    """The example plugin installed as a fake distribution (its source on sys.path); yields its registry."""
    make_dist(tmp_path, "gan-bench-mlp-hinge", {"mlp-hinge": "gan_bench_mlp_hinge:SPEC"})
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    yield Registry(discover(md.distributions(path=[str(tmp_path)])))
    sys.modules.pop("gan_bench_mlp_hinge", None)


def test_example_plugin_passes_the_conformance_kit(example_plugin):
    """What the plugin README tells an author to run in their own tests."""
    check_architecture(example_plugin.load("mlp-hinge"))


def test_example_plugin_depends_only_on_the_contract():
    tree = ast.parse((PLUGIN_SRC / "gan_bench_mlp_hinge" / "__init__.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m.split(".")[0] in ("bench", "architectures")} == {"bench.contract"}


def test_wgan_counts_critic_steps_within_each_epoch_like_the_study():
    """The study's ``i % n_critic`` restarts at every epoch (938 batches, not a multiple of 5)."""
    spec = default_registry().load("wgan")
    gan = spec.build(spec.make_config({"batch_size": 4}), torch.device("cpu"))
    gan.batches_per_epoch = 7
    real = torch.rand(4, 1, 28, 28) * 2 - 1
    updated = []
    for step in range(15):
        before = [p.clone() for p in gan.generator.parameters()]
        gan.train_step(real, step)
        updated.append(any(not torch.equal(a, b) for a, b in zip(before, gan.generator.parameters(), strict=True)))
    # Epoch batches 0..6, 0..6, 0: generator steps at batches 0 and 5 of each epoch.
    assert [s for s, u in enumerate(updated) if u] == [0, 5, 7, 12, 14]


def plain_generator_first_step(gan: GeneratorFirstGAN, opt_g, opt_d, real: torch.Tensor, z: torch.Tensor):
    """The step written the plain way: three discriminator passes, full backwards, the
    arch's own losses; the optimizers are passed in (plain, per-parameter Adam)."""
    opt_g.zero_grad()
    fake = gan.generator(z)
    g_loss = gan.generator_loss(gan.discriminator(fake))
    g_loss.backward()
    opt_g.step()
    opt_d.zero_grad()
    d_loss = gan.discriminator_loss(gan.discriminator(real), gan.discriminator(fake.detach()))
    d_loss.backward()
    opt_d.step()
    return d_loss.detach(), g_loss.detach()


@pytest.mark.parametrize("name", architectures_where(lambda gan: issubclass(gan, GeneratorFirstGAN)))
def test_generator_first_step_is_the_plain_step_in_float64(name, float64):
    """The shared step (one D pass where allowed, backward only where used, fused Adam) gives
    the plain step's losses and weights over 6 steps. In float64, where the reordered sums no
    longer show: a pass too few or too many (BatchNorm statistics, Dropout masks, spectral
    norm's power iteration) would."""
    spec = default_registry().load(name)
    hparams = spec.make_config({"batch_size": 8})
    torch.manual_seed(0)
    gan = spec.build(hparams, CPU)
    torch.manual_seed(0)
    ref = spec.build(hparams, CPU)
    assert isinstance(gan, GeneratorFirstGAN)
    opts = [torch.optim.Adam(net.parameters(), lr=hparams.lr, betas=(hparams.b1, hparams.b2), foreach=False)
            for net in (ref.generator, ref.discriminator)]
    size = spec.image_size
    for i in range(6):
        real = torch.rand(8, 1, size, size, generator=torch.Generator().manual_seed(i)) * 2 - 1
        torch.manual_seed(100 + i)
        out = gan.train_step(real, i)
        torch.manual_seed(100 + i)
        z = torch.randn(8, hparams.latent_dim)  # the shared step's first draw
        d_loss, g_loss = plain_generator_first_step(ref, *opts, real, z)
        torch.testing.assert_close(out["d_loss"], d_loss, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(out["g_loss"], g_loss, rtol=1e-9, atol=1e-12)
    for net in ("generator", "discriminator"):
        a, b = getattr(gan, net).state_dict(), getattr(ref, net).state_dict()
        for k in a:
            if a[k].is_floating_point():
                torch.testing.assert_close(a[k], b[k], rtol=1e-7, atol=1e-10,
                                           msg=lambda m, net=net, k=k: f"{net} {k}: {m}")


# The suite's default steps against the study's, written out in bench.perf.study -----------------


def train_both(name: str, steps: int, batch_size: int):
    """``steps`` steps of the suite's default step and of the study's step (bench.perf.study), from
    the same seed, on the same batches and the same latent draws. Returns both GANs' networks
    and losses per step."""
    spec = default_registry().load(name)
    hparams = spec.make_config({"batch_size": batch_size})
    torch.manual_seed(0)
    gan = spec.build(hparams, CPU)
    torch.manual_seed(0)
    ref = study_model(name, spec.build(hparams, CPU), hparams, spec.image_size)
    gen = torch.Generator().manual_seed(1)
    size = spec.image_size
    batches = [torch.rand(batch_size, 1, size, size, generator=gen).to(torch.get_default_dtype()) * 2 - 1
               for _ in range(steps)]

    torch.manual_seed(5)  # the suite's step draws z (and any dropout masks) from the global RNG
    ours = [gan.train_step(real, i) for i, real in enumerate(batches)]
    torch.manual_seed(5)
    theirs = []
    for i, real in enumerate(batches):
        z = torch.randn(batch_size, hparams.latent_dim)  # the suite's draw, first thing in its step
        d_loss, g_loss = study_step(ref, real, z, i)
        theirs.append((d_loss.detach(), None if g_loss is None else g_loss.detach()))
    return gan, ref, ours, theirs


def assert_losses_close(ours, theirs, **tol) -> None:
    for i, (out, (d_loss, g_loss)) in enumerate(zip(ours, theirs, strict=True)):
        torch.testing.assert_close(out["d_loss"], d_loss, **tol, msg=lambda m, i=i: f"d_loss at step {i}: {m}")
        if g_loss is not None:
            torch.testing.assert_close(out["g_loss"], g_loss, **tol, msg=lambda m, i=i: f"g_loss at step {i}: {m}")


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict().items() if v.is_floating_point()}


def bias_before_batchnorm(module: nn.Module) -> set[str]:
    """State keys of Linear biases that feed a BatchNorm1d directly, and that BatchNorm's running mean."""
    names = [n for n, _ in module.named_modules()]
    mods = dict(module.named_modules())
    keys = set()
    # consecutive pairs: names[1:] is one shorter, so the last name is meant to be dropped
    for a, b in zip(names, names[1:], strict=False):
        if isinstance(mods[a], nn.Linear) and isinstance(mods[b], nn.BatchNorm1d):
            keys |= {f"{a}.bias", f"{b}.running_mean"}
    return keys


@pytest.mark.parametrize("name", ["vanilla", "wgan"])
def test_default_step_is_the_study_step_in_float64(name, float64):
    """20 steps (4 generator steps for wgan) agree to float64 rounding: the same math.

    In float64 the reordered sums (one discriminator pass over fake and real, fused Adam)
    differ from the study's by ~1e-16 relative, far below any change of the math.
    """
    gan, ref, ours, theirs = train_both(name, steps=20, batch_size=32)
    assert_losses_close(ours, theirs, rtol=1e-10, atol=1e-12)
    for net in ("generator", "discriminator"):
        a, b = state(getattr(gan, net)), state(getattr(ref, net))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-9, atol=1e-11, msg=lambda m, net=net, k=k: f"{net} {k}: {m}")


def test_vanilla_default_step_matches_the_study_step_in_float32():
    """The same at float32 (batch 64, 20 steps), to float32 tolerances (atol 1e-5, rtol 1e-4).

    Summation order differs (one batched discriminator pass, fused Adam), so values differ
    in the last bits. The exception is the Linear biases that feed a BatchNorm: BatchNorm
    subtracts the batch mean, so their true gradient is exactly zero and what both sides
    compute is rounding noise, which Adam normalizes to steps of up to ~lr. Those (and the
    running mean they shift) must stay within that bound rather than agree.
    """
    steps, lr = 20, 2e-4
    gan, ref, ours, theirs = train_both("vanilla", steps=steps, batch_size=64)
    assert_losses_close(ours, theirs, rtol=1e-4, atol=1e-5)
    noise = bias_before_batchnorm(gan.generator)
    assert noise == {"model.2.bias", "model.3.running_mean", "model.5.bias", "model.6.running_mean",
                     "model.8.bias", "model.9.running_mean"}
    for net in ("generator", "discriminator"):
        a, b = state(getattr(gan, net)), state(getattr(ref, net))
        for k in a:
            if k in noise:
                assert (a[k] - b[k]).abs().max() <= 2 * steps * lr, f"{net} {k}"
            else:
                torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5,
                                           msg=lambda m, net=net, k=k: f"{net} {k}: {m}")


def test_dcgan_default_step_matches_the_study_step(float64):
    """dcgan (transposed-conv generator, channels_last, fused Adam) against the study's layers.

    In float64: in float32 the fused layers round differently, and Adam turns rounding noise in
    near-zero gradients into full-size steps (its update is about lr * sign(g)), which hides
    whether the math is the same."""
    gan, ref, ours, theirs = train_both("dcgan", steps=4, batch_size=16)
    assert_losses_close(ours, theirs, rtol=1e-4, atol=1e-5)
    for net in ("generator", "discriminator"):
        a, b = state(getattr(gan, net)), state(getattr(ref, net))
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=lambda m, net=net, k=k: f"{net} {k}: {m}")


def test_upsample_conv_is_upsample_then_conv(float64):
    """Values and gradients (input, weight, bias) of the fused form equal the study's two layers."""
    torch.manual_seed(0)
    up, conv = nn.Upsample(scale_factor=2), nn.Conv2d(5, 3, 3, stride=1, padding=1)
    x = torch.randn(2, 5, 4, 6, requires_grad=True)
    y_ref, y = conv(up(x)), upsample_conv(x, conv)
    assert y.shape == y_ref.shape == (2, 3, 8, 12)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    params = (x, conv.weight, conv.bias)
    for a, b in zip(torch.autograd.grad(y, params, g), torch.autograd.grad(y_ref, params, g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_conv_generator_keeps_the_study_layers_and_parameters():
    torch.manual_seed(0)
    fused, plain = ConvGenerator(), ConvGenerator(fuse_upsample=False)
    plain.load_state_dict(fused.state_dict())
    assert [type(m).__name__ for m in fused.conv_blocks] == [
        "BatchNorm2d", "Upsample", "Conv2d", "BatchNorm2d", "LeakyReLU",
        "Upsample", "Conv2d", "BatchNorm2d", "LeakyReLU", "Conv2d", "Tanh",
    ]
    z = torch.randn(4, 100)
    torch.testing.assert_close(fused(z), plain(z), rtol=1e-4, atol=1e-5)
    fused.to(memory_format=torch.channels_last)
    torch.testing.assert_close(fused(z), plain(z), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", architecture_names())
def test_two_steps_under_cpu_bf16_autocast(name):
    """Every architecture trains under the runner's bf16 autocast (fp32 master weights)."""
    spec = builtin_registry().load(name)
    torch.manual_seed(0)
    gan = spec.build(spec.make_config({"batch_size": 8}), CPU)
    real = torch.rand(8, 1, spec.image_size, spec.image_size) * 2 - 1
    for step in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = gan.train_step(real, step)
        assert all(math.isfinite(float(v)) for v in out.values()), out
    for net in gan.networks().values():
        assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in net.parameters())
    assert gan.generate(gan.sample_latent(2)).dtype == torch.float32


def test_sigmoid_outputs_are_float32_under_autocast():
    """Probabilities near 1 would round to 1 in bf16, saturating BCE's log(1 - p)."""
    for name in ("vanilla", "dcgan"):
        spec = default_registry().load(name)
        gan = spec.build(spec.make_config(), CPU)
        x = torch.rand(4, 1, spec.image_size, spec.image_size)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert gan.discriminator(x).dtype == torch.float32, name
