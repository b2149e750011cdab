"""FLOPs of one training step, measured on a throwaway copy of the model.

Before a new run's first batch, the runner calls the architecture's ``train_step``
:data:`FLOP_STEPS` times (steps 0 to 4, on the first batch) on ``copy.deepcopy(gan)`` under
torch's FLOP counter; the copy and the restored RNG state leave the run itself untouched. So a
GAN must be deep-copyable, and its step must not reach the original through anything a deep
copy shares. The plugin's own failure in those calls is its error, named like any other; the
counter's failure only costs the FLOP figure.
"""

from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import console
from bench.contract import GAN
from bench.device import rng_state, set_rng_state
from bench.errors import PluginError
from bench.training.divergence import model_finite

#: Training steps whose FLOPs are averaged for ``flops_per_step`` (covers a 5-step critic cycle).
FLOP_STEPS = 5


def measure_flops(gan: GAN, real: torch.Tensor, name: str, steps: int = FLOP_STEPS) -> int | None:
    """FLOPs of one training step of architecture ``name``, averaged over ``steps`` steps of a deep copy of ``gan``.

    Returns None (with a warning) when the FLOP counter cannot follow the step: its module hooks
    refuse ``autograd.grad`` on a leaf, which a gradient penalty does.

    Raises:
        PluginError: ``gan`` cannot be deep-copied, or its step raises without the counter too.
    """
    state = rng_state(real.device)
    try:
        clone = copy_for_counting(gan, name)
        try:
            with FlopCounterMode(display=False) as counter:
                train_copy(clone, real, steps, name)
            return int(counter.get_total_flops() // steps)
        except PluginError as exc:
            failure = exc
        if not model_finite(clone, gan.sample_latent(2)):
            console.warn("FLOPs per step not measured: the model diverged within the counted steps")
            return None
        # The counter's failure or the plugin's? The same steps on a fresh copy, without the counter, tell.
        set_rng_state(state, real.device)
        train_copy(copy_for_counting(gan, name), real, steps, name)
        reason = str(failure.__cause__).splitlines()[0] if str(failure.__cause__) else type(failure.__cause__).__name__
        console.warn(f"FLOPs per step not measured: torch's FLOP counter failed on this step ({reason})")
        return None
    finally:
        set_rng_state(state, real.device)


def copy_for_counting(gan: GAN, name: str) -> GAN:
    """``copy.deepcopy(gan)``; a GAN that cannot be copied is the plugin's error."""
    try:
        return copy.deepcopy(gan)
    except Exception as exc:  # a plugin's object may raise anything from __deepcopy__ or pickling
        raise PluginError(name, f"cannot be deep-copied ({type(exc).__name__}: {exc}); the runner counts FLOPs "
                                "on copy.deepcopy of the model before training, so it must be deep-copyable") from exc


def train_copy(clone: GAN, real: torch.Tensor, steps: int, name: str) -> None:
    """Run training steps 0 to ``steps - 1`` on ``clone``; an exception is the plugin's, naming the step."""
    for step in range(steps):
        try:
            clone.train_step(real, step)
        except Exception as exc:
            raise PluginError(name, f"train_step raised {type(exc).__name__} at step {step} of the FLOP count "
                                    f"(steps 0-{steps - 1} on a copy of the model, before training): {exc}") from exc
