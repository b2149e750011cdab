"""What the runner trains: one seed's GAN, or several seeds as one stack, behind one interface.

The runner's loop is the same for both: each step takes one batch per run and returns each
run's outputs; each run is evaluated, sampled and checkpointed through its own GAN. Only
here does it matter whether those GANs are separate models or slices of one stacked model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from bench.contract import GAN
from bench.device import set_rng_state
from bench.training.cuda_graphs import StepGraph
from bench.training.divergence import weights_finite
from bench.training.stack import SeedStack

#: One run's checkpointed model: its GAN's state dict and its RNG states.
ModelState = tuple[dict[str, Any], Any]


class Model(Protocol):
    """The runs' models: ``size`` of them, trained one step at a time, together."""

    size: int

    def set_batches_per_epoch(self, n: int) -> None:
        """Tell every GAN how many batches an epoch has (for schedules by epoch)."""

    def step(self, reals: Sequence[Tensor], step: int) -> list[dict[str, Tensor]]:
        """Train every run's model on its batch ``reals[i]``; return each run's step outputs."""

    def gan(self, i: int) -> GAN:
        """Run ``i``'s GAN as it stands (to evaluate, sample or checkpoint it)."""

    def rng_state(self, i: int) -> dict[str, Tensor] | None:
        """Run ``i``'s RNG states for its checkpoint (None: the process's global ones)."""

    def finite(self) -> list[bool]:
        """Per run, whether its weights hold no NaN or infinity (one host sync)."""

    def stop(self, i: int) -> None:
        """Run ``i`` has diverged: stop changing its model while the others train on."""

    def load(self, states: Sequence[ModelState]) -> None:
        """Restore every run's model and RNG from its checkpoint."""


class SingleModel:
    """One seed's GAN, its step replayed as a CUDA graph when asked; its RNG is the process's."""

    size = 1

    def __init__(self, gan: GAN, device: torch.device, graphs: StepGraph | None = None):
        self.the_gan, self.device, self.graphs = gan, device, graphs

    def set_batches_per_epoch(self, n: int) -> None:
        self.the_gan.batches_per_epoch = n

    def step(self, reals: Sequence[Tensor], step: int) -> list[dict[str, Tensor]]:
        (real,) = reals
        return [self.graphs.step(real, step) if self.graphs is not None else self.the_gan.train_step(real, step)]

    def gan(self, i: int) -> GAN:
        return self.the_gan

    def rng_state(self, i: int) -> dict[str, Tensor] | None:
        return None

    def finite(self) -> list[bool]:
        return [weights_finite(self.the_gan.networks().values())]

    def stop(self, i: int) -> None:
        pass  # the loop ends with its only run

    def load(self, states: Sequence[ModelState]) -> None:
        ((gan_state, rng),) = states
        self.the_gan.load_state_dict(gan_state)
        set_rng_state(rng, self.device)


class StackModel:
    """Several seeds of one architecture as one :class:`SeedStack`; each seed's GAN is its slice."""

    def __init__(self, stack: SeedStack):
        self.stack = stack
        self.size = stack.size

    def set_batches_per_epoch(self, n: int) -> None:
        self.stack.batches_per_epoch = n

    def step(self, reals: Sequence[Tensor], step: int) -> list[dict[str, Tensor]]:
        return self.stack.split(self.stack.train_step(torch.stack(list(reals)), step))

    def gan(self, i: int) -> GAN:
        return self.stack.seed(i)

    def rng_state(self, i: int) -> dict[str, Tensor] | None:
        return self.stack.seed_rng_state(i)

    def finite(self) -> list[bool]:
        return self.stack.finite_weights()

    def stop(self, i: int) -> None:
        self.stack.stop(i)

    def load(self, states: Sequence[ModelState]) -> None:
        self.stack.load_state_dict({"seeds": list(self.stack.seeds), "active": [True] * self.size,
                                    "states": [{"gan": gan_state, "rng": rng} for gan_state, rng in states]})
