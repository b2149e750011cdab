"""The suite's faster training steps compute the study's math; ``bench perf`` runs end to end."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys

import pytest
import torch
from torch import nn

from architectures.nets import ConvGenerator, upsample_conv
from bench.cli import perf as perf_command
from bench.cli.options import Parser
from bench.data import FILES
from bench.errors import UsageError
from bench.perf.measure import PerfConfig
from bench.perf.study import STUDY_REFERENCES, study_mnist_root, study_model, study_step
from bench.registry import default_registry

from helpers import architecture_names

CPU = torch.device("cpu")


@pytest.fixture
def float64():
    """Build and train in float64, where summation order no longer shows."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


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
    batches = [torch.rand(batch_size, 1, size, size, generator=gen).to(torch.get_default_dtype()) * 2 - 1 for _ in range(steps)]

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
    for i, (out, (d_loss, g_loss)) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(out["d_loss"], d_loss, **tol, msg=lambda m: f"d_loss at step {i}: {m}")
        if g_loss is not None:
            torch.testing.assert_close(out["g_loss"], g_loss, **tol, msg=lambda m: f"g_loss at step {i}: {m}")


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict().items() if v.is_floating_point()}


def bias_before_batchnorm(module: nn.Module) -> set[str]:
    """State keys of Linear biases that feed a BatchNorm1d directly, and that BatchNorm's running mean."""
    names = [n for n, _ in module.named_modules()]
    mods = dict(module.named_modules())
    keys = set()
    for a, b in zip(names, names[1:]):
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
            torch.testing.assert_close(a[k], b[k], rtol=1e-9, atol=1e-11, msg=lambda m: f"{net} {k}: {m}")


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
                torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{net} {k}: {m}")


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
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{net} {k}: {m}")


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
    for a, b in zip(torch.autograd.grad(y, params, g), torch.autograd.grad(y_ref, params, g)):
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
    spec = default_registry().load(name)
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


def perf_args(*argv: str) -> argparse.Namespace:
    parser = Parser(prog="python -m bench")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    perf_command.add_parser(sub)
    return parser.parse_args(["perf", *argv])


def test_perf_runs_end_to_end_and_writes_its_record(tmp_path):
    out = tmp_path / "perf.json"
    args = perf_args(
        "--arch", "vanilla", "--precision", "bf16", "--rounds", "1", "--batches", "4", "--warmup", "1",
        "--train-subset", "256", "--peak-seconds", "0.05", "--cache-dir", str(tmp_path / "cache"), "--json", str(out),
    )
    assert args.func(args) == 0
    record = json.loads(out.read_text())
    assert {"arch", "precision", "batch_size", "rounds", "batches_per_round", "warmup_batches",
            "matmul_peak_gflops", "contenders", "runner_overhead", "env"} <= record.keys()
    assert set(record["contenders"]) == {"study", "runner_fp32", "runner_bf16", "bare_fp32", "bare_bf16"}
    for c in record["contenders"].values():
        assert len(c["batches_per_s"]) == 1 and c["batches_per_s_median"] > 0
        assert c["flops_per_step"] > 0 and 0 < c["share_of_peak"]
        assert {"median", "min", "max"} == c["vs_study"].keys()
    assert record["contenders"]["study"]["vs_study"]["median"] == 1.0
    assert set(record["runner_overhead"]) == {"fp32", "bf16"}
    assert {"vs_bare_loop", "outside_batch_timer"} == record["runner_overhead"]["bf16"].keys()
    assert {"before", "after", "cpus"} == record["load_average"].keys()
    assert set(record["matmul_peak_gflops"]) == {"fp32", "bf16"}
    raw = tmp_path / "cache" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(FILES)  # uncompressed, nothing left half-written


def test_perf_refuses_architectures_without_a_study_loop():
    with pytest.raises(UsageError, match="dcgan, vanilla, wgan"):
        PerfConfig(arch="lsgan").validate()
    assert set(STUDY_REFERENCES) <= set(architecture_names())


def test_perf_refuses_an_unwritable_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UsageError, match="--cache-dir"):
        study_mnist_root(blocker / "cache")


FAULTS_SCRIPT = """
import json, resource, sys, torch
from bench.environment import environment, tune_allocator
from architectures.vanilla import Vanilla, VanillaConfig
setting = tune_allocator()
torch.set_num_threads(1)
torch.manual_seed(0)
gan = Vanilla(VanillaConfig(), torch.device("cpu"))
real = torch.rand(64, 1, 28, 28) * 2 - 1
def steps(n):
    for i in range(n):
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            gan.train_step(real, i)
steps(10)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
steps(20)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
print(json.dumps({"setting": setting, "env": environment(torch.device("cpu"))["allocator"], "faults": faults}))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator setting is glibc's")
def test_tuned_allocator_stops_the_page_faults_of_every_step():
    """With glibc's defaults each bf16 vanilla step faults in its fresh weight casts and
    gradients again (hundreds of minor faults per step); with freed memory kept, almost none."""

    def measure(**env):
        out = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1", **env})
        return json.loads(out.stdout.strip().splitlines()[-1])

    tuned = measure()
    assert tuned["setting"].startswith("glibc, freed memory kept") and tuned["env"] == tuned["setting"]
    assert tuned["faults"] < 20
    default = measure(GAN_BENCH_MALLOC="default")
    assert default["setting"] == default["env"] == "default"
    assert default["faults"] > 5 * max(tuned["faults"], 1)
