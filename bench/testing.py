"""The plugin contract as checks an architecture's author runs in their own test suite.

In the spirit of scikit-learn's ``check_estimator``: gan-bench runs the same checks over its
built-in architectures, and a plugin's tests need five lines::

    from bench.testing import check_architecture

    def test_mlp_hinge_keeps_the_gan_bench_contract():
        check_architecture("mlp-hinge")  # a registered name, or the ArchSpec itself

The first violation raises :class:`ContractViolation` (an ``AssertionError``, so test runners
report it as a failed check, and a :class:`~bench.errors.PluginError`) naming the architecture
and what to fix. The checks need no data and take seconds on a CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from bench.contract import GAN, ArchSpec, GANConfig, check_samples, check_step_output
from bench.errors import PluginError
from bench.registry import default_registry
from bench.training.checks import build_gan
from bench.training.flops import measure_flops
from bench.training.stack import SeedStack, stackable

#: The batch size the checks train with, and the size of a smaller last batch of an epoch.
BATCH = 8
LAST_BATCH = 5
#: Training steps before a model's state is compared (covers a skipped generator update).
STEPS = 3


class ContractViolation(PluginError, AssertionError):
    """An architecture breaks the plugin contract."""


def check_architecture(spec_or_name: ArchSpec | str, device: str | torch.device = "cpu") -> None:
    """Check that an architecture keeps the plugin contract; raise :class:`ContractViolation` at the first break.

    Checks the spec's fields, the config's defaults, the build, the networks and optimizers, a few
    training steps (detached finite scalars, a smaller last batch), the generated images, the
    FLOP count's steps on a deep copy, that a model restored from ``state_dict()`` trains exactly
    like the original, that ``generate()`` needs nothing beyond ``generator`` and
    ``sampling_state()``, and, for an architecture that can be stacked, that each seed of a
    stack trains as its own run does (in float64 on the CPU).
    """
    spec = default_registry().load(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    check_spec(spec)
    device = torch.device(device)
    with _violations(spec.name):
        cfg = check_config(spec)
        gan = check_build(spec, cfg, device)
        real = real_batch(spec, device)
        check_steps(spec.name, gan, real)
        check_generate(spec, gan)
        check_flop_count(spec.name, gan, real)
        check_state_dict(spec, cfg, device, real)
        check_sampling_state(spec, cfg, device, real)
        check_stacking(spec, cfg)


@contextlib.contextmanager
def _violations(name: str) -> Iterator[None]:
    """Report the plugin's own errors found by the runner's checks as violations."""
    try:
        yield
    except ContractViolation:
        raise
    except PluginError as exc:
        raise ContractViolation(name, _reason(exc, name)) from exc


def _fail(name: str, message: str) -> ContractViolation:
    return ContractViolation(name, message)


def _reason(exc: PluginError, name: str) -> str:
    """The message of a plugin's error without the architecture's name in front."""
    return str(exc).removeprefix(f"architecture {name!r}: ")


def real_batch(spec: ArchSpec, device: torch.device, n: int = BATCH) -> Tensor:
    """A batch of ``n`` random images in [-1, 1] shaped as the architecture trains on them."""
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, spec.image_size, spec.image_size, generator=gen) * 2 - 1).to(device)


def check_spec(spec: Any) -> None:
    """The spec: an ArchSpec with a name, a one-line description, 28 or 32, a GANConfig dataclass, a build and a
    positive ``timed_batches``."""
    if not isinstance(spec, ArchSpec):
        raise _fail("?", f"expected a bench.contract.ArchSpec, got {type(spec).__name__}")
    name = spec.name
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise _fail(str(name), "the spec's name must be a non-empty string without spaces (it is --arch NAME)")
    if not isinstance(spec.description, str) or not spec.description.strip() or "\n" in spec.description:
        raise _fail(name, "the spec's description must be one non-empty line (bench list shows it)")
    if spec.image_size not in (28, 32):
        raise _fail(name, f"image_size must be 28 or 32, got {spec.image_size!r}")
    config = spec.config
    if not (isinstance(config, type) and dataclasses.is_dataclass(config) and issubclass(config, GANConfig)):
        raise _fail(name, f"config must be a dataclass subclassing bench.contract.GANConfig, got {config!r}")
    if not callable(spec.build):
        raise _fail(name, "build must be callable: build(config, device) -> GAN")
    if not isinstance(spec.timed_batches, int) or isinstance(spec.timed_batches, bool) or spec.timed_batches < 1:
        raise _fail(name, f"timed_batches must be a whole number of at least 1, got {spec.timed_batches!r}")


def check_config(spec: ArchSpec) -> GANConfig:
    """Every hyperparameter has a default; return the defaults with the checks' batch size."""
    try:
        defaults = spec.make_config()
    except TypeError as exc:
        raise _fail(spec.name, f"every field of {spec.config.__name__} needs a default ({exc})") from exc
    for key in ("batch_size", "latent_dim"):
        value = getattr(defaults, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _fail(spec.name, f"the default {key} must be a positive int, got {value!r}")
    return spec.make_config({"batch_size": BATCH})


def check_build(spec: ArchSpec, cfg: GANConfig, device: torch.device, seed: int = 0) -> GAN:
    """``build(config, device)`` returns a GAN with its networks on ``device`` and named optimizers."""
    torch.manual_seed(seed)
    gan = build_gan(spec, cfg, device)
    name = spec.name
    if not isinstance(gan, GAN):
        raise _fail(name, f"build returned a {type(gan).__name__}, not a bench.contract.GAN")
    networks = gan.networks()
    if not {"generator", "discriminator"} <= set(networks):
        raise _fail(name, f"networks() must include generator and discriminator, got {sorted(networks)}")
    for key, module in networks.items():
        if not isinstance(module, nn.Module):
            raise _fail(name, f"networks()[{key!r}] is a {type(module).__name__}, not an nn.Module")
        elsewhere = {p.device for p in module.parameters() if p.device.type != device.type}
        if elsewhere:
            raise _fail(name, f"{key} has parameters on {sorted(map(str, elsewhere))}, not on {device}")
    if not isinstance(gan.latent_dim, int) or gan.latent_dim < 1:
        raise _fail(name, f"latent_dim must be a positive int, got {gan.latent_dim!r}")
    optimizers = gan.optimizers()
    if not optimizers or not all(isinstance(o, torch.optim.Optimizer) for o in optimizers.values()):
        raise _fail(name, "optimizers() must name the optimizers (checkpoints need them): set opt_g and opt_d, "
                          "or override optimizers()")
    return gan


def _step(name: str, gan: GAN, real: Tensor, step: int) -> Mapping[str, Tensor]:
    try:
        out = gan.train_step(real, step)
    except Exception as exc:
        raise _fail(name, f"train_step raised {type(exc).__name__} at step {step} "
                          f"(batch of {len(real)}): {exc}") from exc
    check_step_output(name, out, when=f"at step {step}")
    return out


def check_steps(name: str, gan: GAN, real: Tensor) -> None:
    """A few steps return detached finite scalars, update the generator, and take a smaller last batch."""
    before = [p.detach().clone() for p in gan.generator.parameters()]
    for step in range(STEPS):
        _step(name, gan, real, step)
    if before and all(torch.equal(a, p) for a, p in zip(before, gan.generator.parameters(), strict=True)):
        raise _fail(name, f"{STEPS} training steps did not update the generator")
    try:
        _step(name, gan, real[:LAST_BATCH], STEPS)
    except ContractViolation as exc:
        raise _fail(name, f"{_reason(exc, name)}; the last batch of an epoch may be smaller than batch_size: "
                          "size latents and labels from real.shape[0]") from exc


def check_generate(spec: ArchSpec, gan: GAN) -> None:
    """Latents and images of the right shape, in [-1, 1], without a graph, reproducible; training mode restored."""
    name = spec.name
    z = gan.sample_latent(4, torch.Generator().manual_seed(0))
    if not isinstance(z, Tensor) or len(z) != 4:
        raise _fail(name, f"sample_latent(4) must return 4 latents, got {getattr(z, 'shape', z)!r}")
    images = gan.generate(z)
    check_samples(name, images, 4, spec.image_size)
    if images.requires_grad:
        raise _fail(name, "generate returned images that require grad: decorate it with @torch.no_grad()")
    if not gan.generator.training:
        raise _fail(name, "generate must restore the generator's training mode")
    if not torch.equal(images, gan.generate(z)):
        raise _fail(name, "generate gave different images for the same latents; the evaluation draws fixed "
                          "latents so that its numbers can be reproduced")


def _snapshot(gan: GAN) -> dict[str, Tensor]:
    return {f"{k}.{n}": t.detach().clone() for k, m in gan.networks().items() for n, t in m.state_dict().items()}


def check_flop_count(name: str, gan: GAN, real: Tensor) -> None:
    """The runner's FLOP count (steps 0-4 on ``copy.deepcopy(gan)``) runs, and leaves the model untouched."""
    before = _snapshot(gan)
    measure_flops(gan, real, name)
    after = _snapshot(gan)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if changed:
        raise _fail(name, f"the FLOP count's steps on copy.deepcopy(gan) changed the original model ({changed[0]}): "
                          "the step reaches the networks through something a deep copy shares (a closure, a global)")


def _round_trip(name: str, what: str, state: Any) -> Any:
    """``state`` saved with torch.save and loaded back with ``weights_only=True``, as gan-bench's files are."""
    buffer = io.BytesIO()
    try:
        torch.save(state, buffer)
        buffer.seek(0)
        return torch.load(buffer, weights_only=True)
    except Exception as exc:
        raise _fail(name, f"{what} does not load back with torch.load(weights_only=True): keep it to tensors "
                          f"and plain data ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc


def _same(a: Tensor, b: Tensor) -> bool:
    """Equal on the CPU; within float rounding on an accelerator, whose kernels need not be deterministic."""
    if a.device.type == "cpu":
        return torch.equal(a, b)
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-6)


def check_state_dict(spec: ArchSpec, cfg: GANConfig, device: torch.device, real: Tensor) -> None:
    """A model restored from ``state_dict()`` (as a checkpoint is) trains and generates exactly like the original."""
    name = spec.name
    original = check_build(spec, cfg, device)
    for step in range(STEPS):
        _step(name, original, real, step)
    restored = check_build(spec, cfg, device, seed=1)
    restored.load_state_dict(_round_trip(name, "state_dict()", original.state_dict()))
    outputs = []
    for gan in (original, restored):
        torch.manual_seed(STEPS)
        outputs.append(_step(name, gan, real, STEPS))
    after = [_snapshot(gan) for gan in (original, restored)]
    differing = [k for k in outputs[0] if not _same(outputs[0][k], outputs[1].get(k, torch.tensor(math.nan)))]
    differing += [k for k in after[0] if not _same(after[0][k], after[1][k])]
    if differing:
        raise _fail(name, f"a model restored from state_dict() trains differently from the original ({differing[0]} "
                          "differs after one more step): a checkpoint must hold everything the step depends on "
                          "(networks(), optimizers(), extra_state())")


def check_sampling_state(spec: ArchSpec, cfg: GANConfig, device: torch.device, real: Tensor) -> None:
    """A fresh model given the trained generator and ``sampling_state()`` generates what the trained one does."""
    name = spec.name
    trained = check_build(spec, cfg, device)
    for step in range(STEPS):
        _step(name, trained, real, step)
    state = trained.sampling_state()
    if not isinstance(state, dict):
        raise _fail(name, f"sampling_state() must return a dict, got {type(state).__name__}")
    rebuilt = check_build(spec, cfg, device, seed=1)  # what bench eval does with generator.pt and sampling.pt
    rebuilt.generator.load_state_dict(_round_trip(name, "the generator's state_dict()", trained.generator.state_dict()))
    if state:
        rebuilt.load_sampling_state(_round_trip(name, "sampling_state()", state))
    z = trained.sample_latent(4, torch.Generator().manual_seed(0))
    if not _same(trained.generate(z), rebuilt.generate(z)):
        raise _fail(name, "generate() depends on state beyond generator that sampling_state() does not return: "
                          "a fresh model given the trained generator generates other images, so bench eval would "
                          "score another model. Return that state (e.g. an EMA generator's state_dict) from "
                          "sampling_state() and restore it in load_sampling_state()")



#: The seeds of the stacking check, and its tolerance (float64: what is left is rounding).
STACK_SEEDS = (0, 1)
STACK_RTOL = 1e-9


@contextlib.contextmanager
def _float64() -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def check_stacking(spec: ArchSpec, cfg: GANConfig) -> None:
    """For an architecture that can be stacked (``--stack``): each seed of a stack of two, on its own
    batches, gives the outputs its own run gives, step for step (float64, CPU, to 1e-9 relative).

    An architecture that cannot be stacked (its own ``train_step`` without a ``stack_step``, say)
    passes: stacking is optional, and its seeds run separately.
    """
    name = spec.name
    cpu = torch.device("cpu")
    with _float64(), torch.random.fork_rng(devices=[]):
        if stackable(spec, cfg) is not None:
            return
        reals = [real_batch(spec, cpu).to(torch.float64) * (0.5 + 0.25 * i) for i in range(len(STACK_SEEDS))]
        try:
            stack = SeedStack(spec, cfg, STACK_SEEDS, cpu)
            stacked = [stack.split(stack.train_step(torch.stack(reals), step)) for step in range(STEPS)]
        except Exception as exc:
            raise _fail(name, f"stack_step failed on a stack of {len(STACK_SEEDS)} seeds ({type(exc).__name__}: "
                              f"{exc}); fix it, or declare not_stackable = 'why' on the GAN class") from exc
        for i, seed in enumerate(STACK_SEEDS):
            torch.manual_seed(seed)
            gan = build_gan(spec, cfg, cpu)
            for step in range(STEPS):
                own = _step(name, gan, reals[i], step)
                for key, value in own.items():
                    theirs = stacked[step][i].get(key)
                    if theirs is None or not torch.allclose(theirs.double(), value.double(), rtol=STACK_RTOL,
                                                            atol=1e-12):
                        raise _fail(name, f"seed {seed} of a stack gives {key} = {_value(theirs)} at step {step}, "
                                          f"its own run {value.item():.12g}: stack_step must do for every seed "
                                          "exactly what train_step does (draw randomness through the stack, "
                                          "losses through stack.per_seed)")


def _value(t: Tensor | None) -> str:
    return "nothing" if t is None else f"{t.item():.12g}"
