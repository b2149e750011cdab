"""The plugin contract: what an architecture provides and what the runner may call.

An architecture is an :class:`ArchSpec` (cheap: no networks are built to describe it)
exposed through the ``gan_bench.architectures`` entry-point group. ``spec.build(config,
device)`` returns a :class:`GAN`, which owns its networks, its optimizers and its own
training step. The runner owns everything else (data, budgets, timing, logging, metrics),
the same way for every architecture, so that timings are comparable.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from bench.config import Range, apply_overrides, at_least, between, check_ranges, positive
from bench.errors import PluginError, UsageError

__all__ = [
    "DIAGNOSTICS", "GAN", "REQUIRED_LOSSES", "ArchSpec", "GANConfig", "Range", "at_least", "between",
    "check_samples", "check_step_output", "count_parameters", "positive",
]

#: Keys every training step must return (detached scalar tensors).
REQUIRED_LOSSES = ("d_loss", "g_loss")
#: Conventional diagnostics: the discriminator's mean output on real and generated images.
DIAGNOSTICS = ("d_real", "d_fake")


@dataclass
class GANConfig:
    """Hyperparameters every architecture has; subclass it to add your own.

    A field may declare the values it takes, checked whenever a config is made (defaults
    and ``--set`` overrides alike), e.g. ``lr: float = field(default=2e-4, metadata=positive())``;
    see :func:`positive`, :func:`at_least`, :func:`between` and :class:`Range`. Float fields
    must be finite in any case.
    """

    batch_size: int = field(default=64, metadata=at_least(1))
    latent_dim: int = field(default=100, metadata=at_least(1))


@dataclass(frozen=True)
class ArchSpec:
    """A cheap description of an architecture and the function that builds it.

    Attributes:
        name: the registry name (``--arch NAME``); the entry point's name must match it.
        description: one line shown by ``bench list``.
        image_size: side of the square one-channel images it trains on (28 or 32).
        config: a dataclass type (subclass of :class:`GANConfig`) of default hyperparameters.
        build: ``build(config, device) -> GAN``.
        timed_batches: batches ``bench perf --seeds`` times per contender and round unless ``--batches``
            says: fewer for an architecture whose step is slow (the conv nets), so a measurement stays short.
    """

    name: str
    description: str
    image_size: int
    config: type[GANConfig]
    build: Callable[[Any, torch.device], GAN]
    timed_batches: int = 100

    def make_config(self, overrides: Mapping[str, Any] | None = None) -> GANConfig:
        """Return the default hyperparameters with ``overrides`` applied, each within its declared range.

        Raises:
            PluginError: a default is outside its own declared range (the plugin's fault).
            UsageError: an override is unknown, mistyped or out of range.
        """
        defaults = self.config()
        try:
            check_ranges(defaults)
        except UsageError as exc:
            raise PluginError(self.name, f"default {exc}") from None
        return apply_overrides(defaults, overrides or {})


class SeedStackOps(Protocol):
    """What a stack of seeds offers :meth:`GAN.stack_step` (``bench.training.stack.SeedStack``).

    Every tensor has a leading seed dimension of :attr:`size`; seed ``i`` of a stack is the run
    ``bench run --seed seeds[i]`` makes, so each of these does, per seed, what a single run does.
    """

    #: The number of seeds S.
    size: int
    #: Carried training state (what :meth:`GAN.extra_state` holds), per seed: shape (S, ...).
    extra: dict[str, Tensor]

    def network(self, name: str) -> Callable[[Tensor], Tensor]:
        """The stacked network ``name`` of :meth:`GAN.networks`: (S, B, ...) in, (S, B, ...) out."""

    def parameters(self, name: str) -> list[Tensor]:
        """The stacked parameters of network ``name`` (leaves of shape (S, ...))."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The stacked optimizers, by the names of :meth:`GAN.optimizers`."""

    def randn(self, *size: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """``torch.randn(*size)`` drawn per seed from that seed's generator: shape (S, *size)."""

    def rand(self, *size: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """``torch.rand(*size)`` drawn per seed from that seed's generator: shape (S, *size)."""

    def per_seed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn`` (written for one seed, e.g. a loss of scores) applied to each seed's slice of ``args``."""

    def backward(self, losses: Tensor, network: str, retain_graph: bool = False) -> None:
        """Backpropagate the per-seed ``losses`` (S,) into network ``name``: each seed gets its own gradients."""


class GAN(abc.ABC):
    """A built architecture: networks, optimizers and one training step.

    Subclasses set ``generator``, ``discriminator`` and ``latent_dim`` in ``__init__``
    and implement :meth:`train_step`.

    Calls the runner makes beyond the training loop: before a new run's first batch it counts
    FLOPs by calling :meth:`train_step` five times (steps 0 to 4, on the first batch) on
    ``copy.deepcopy(gan)``, and throws the copy away (the RNG state is restored). So a GAN must
    be deep-copyable, and its step must reach its networks and optimizers only through the
    object (not through a closure or a module global holding the originals), or the count
    would train the real model. ``bench.testing.check_architecture`` checks both.
    """

    generator: nn.Module
    discriminator: nn.Module
    latent_dim: int
    #: Batches in one epoch of the training data; set by the runner before the first step,
    #: for schedules that count batches within an epoch (as the study's WGAN did).
    batches_per_epoch: int | None = None
    #: True when train_step neither branches on ``step`` nor on host-side state, so the
    #: runner may capture it as one CUDA graph (``--cuda-graphs``).
    graph_safe: bool = False
    #: Methods whose stacked counterpart must be defined by the same class or a subclass: a
    #: subclass that overrides one without the other cannot be stacked (its stacked step would no
    #: longer be its step). Step shapes that implement :meth:`stack_step` extend it.
    stack_counterparts: ClassVar[Mapping[str, str]] = {"train_step": "stack_step"}
    #: Why this architecture cannot train as a stack of seeds although its step shape can (an
    #: opt-out for architectures built on a shape), or None.
    not_stackable: ClassVar[str | None] = None

    def batch_in_epoch(self, step: int) -> int:
        """The index of global batch ``step`` within its epoch (``step`` if the epoch length is unknown)."""
        return step % self.batches_per_epoch if self.batches_per_epoch else step

    @abc.abstractmethod
    def train_step(self, real: Tensor, step: int) -> dict[str, Tensor]:
        """Update the networks on one batch of real images.

        Args:
            real: images in [-1, 1], shape (B, 1, S, S), already on the device.
            step: the global batch index, starting at 0 (schedules such as "a generator
                step every 5th batch" key on it).

        Returns:
            Detached scalar tensors: ``d_loss`` and ``g_loss`` always (an architecture that
            skips a generator update returns its latest generator loss), ``d_real`` and
            ``d_fake`` (mean discriminator output on real and generated images) where they
            mean something, and any other per-step diagnostics. Never call ``.item()``
            here: the runner pulls values at log intervals to avoid a device sync per batch.
        """

    def stack_step(self, stack: SeedStackOps, real: Tensor, step: int) -> dict[str, Tensor]:
        """Update every seed of ``stack`` on its batch of ``real`` (S, B, 1, S, S) as :meth:`train_step` would.

        Optional: an architecture that implements it (the step shapes of ``bench.architectures.steps``
        and ``bench.architectures.wgan`` do) can train several seeds as one stacked model. ``self``
        supplies hyperparameters and loss functions only: the networks, optimizers, random
        streams and carried state are the stack's. Returns :meth:`train_step`'s keys, each a
        detached tensor of shape (S,).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement stack_step")

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` latent vectors on the CPU (reproducible across devices)."""
        return torch.randn(n, self.latent_dim, generator=generator)

    @torch.no_grad()
    def generate(self, z: Tensor) -> Tensor:
        """Return images in [-1, 1] of shape (N, 1, S, S) for latents ``z``, in eval mode."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            return self.generator(z.to(self.device))
        finally:
            self.generator.train(was_training)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def networks(self) -> dict[str, nn.Module]:
        """The modules whose state makes up the model (for counting and checkpoints)."""
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers, by name (for checkpoints). Override if yours are not opt_g/opt_d."""
        return {name: getattr(self, name) for name in ("opt_g", "opt_d") if hasattr(self, name)}

    def extra_state(self) -> dict[str, Tensor]:
        """Training state beyond networks and optimizers (e.g. a carried-over loss), for
        checkpoints: tensors only. Override together with :meth:`load_extra_state`."""
        return {}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:  # noqa: B027 (an opt-in hook)
        """Restore what :meth:`extra_state` returned."""

    def sampling_state(self) -> dict[str, Any]:
        """Whatever :meth:`generate` needs besides ``generator`` (e.g. an EMA copy's state dict).

        The runner writes it beside the generator when a run ends, and ``bench eval`` loads it
        into a freshly built model whose ``generator`` holds the trained weights. Tensors, or
        dicts of them (state dicts). The default, nothing, fits a ``generate`` that uses only
        ``generator``. Override together with :meth:`load_sampling_state`. (Checkpoints hold
        :meth:`state_dict`: keep such a module in :meth:`networks` too, so a resume keeps it.)
        """
        return {}

    def load_sampling_state(self, state: dict[str, Any]) -> None:  # noqa: B027 (an opt-in hook)
        """Restore what :meth:`sampling_state` returned."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly: networks, optimizers, extra state."""
        return {
            "networks": {k: m.state_dict() for k, m in self.networks().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for k, m in self.networks().items():
            m.load_state_dict(state["networks"][k])
        for k, o in self.optimizers().items():
            o.load_state_dict(state["optimizers"][k])
        self.load_extra_state(state.get("extra", {}))


def count_parameters(module: nn.Module) -> int:
    """Return the number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def check_step_output(name: str, out: Any, finite: bool = True, when: str = "on the first step") -> None:
    """Raise :class:`PluginError` if one training step's output breaks the contract (``when``: the step, as named).

    ``finite``: also require finite values (the runner asks separately, since a run that has
    already diverged on its first step returns non-finite losses without breaking the contract).
    """
    if not isinstance(out, Mapping):
        raise PluginError(name, f"train_step returned {type(out).__name__}, expected a dict of scalar tensors")
    missing = [k for k in REQUIRED_LOSSES if k not in out]
    if missing:
        raise PluginError(name, f"train_step did not return {', '.join(missing)} (got: {', '.join(out) or 'nothing'})")
    for key, value in out.items():
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise PluginError(name, f"train_step value {key!r} is not a scalar tensor")
        if value.requires_grad:
            raise PluginError(name, f"train_step value {key!r} is not detached (call .detach())")
        if finite and not math.isfinite(float(value)):
            raise PluginError(name, f"train_step value {key!r} is not finite {when} ({float(value)})")


def check_samples(name: str, images: Any, n: int, image_size: int) -> None:
    """Raise :class:`PluginError` if generated images break the contract."""
    expected = (n, 1, image_size, image_size)
    if not isinstance(images, Tensor) or tuple(images.shape) != expected:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise PluginError(name, f"generate returned shape {got}, expected {expected}")
    if not torch.isfinite(images).all():
        raise PluginError(name, "generate returned non-finite values")
    if images.min() < -1.0001 or images.max() > 1.0001:
        low, high = float(images.min()), float(images.max())
        raise PluginError(name, f"generate returned values in [{low:.3g}, {high:.3g}], expected [-1, 1]")
