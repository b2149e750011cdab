"""FLOPs of one training step, measured on a throwaway copy of the model."""

from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import console
from bench.contract import GAN
from bench.device import rng_state, set_rng_state

#: Training steps whose FLOPs are averaged for ``flops_per_step`` (covers a 5-step critic cycle).
FLOP_STEPS = 5


def measure_flops(gan: GAN, real: torch.Tensor, steps: int = FLOP_STEPS) -> int | None:
    """FLOPs of one training step, averaged over ``steps`` steps of a deep copy of ``gan``.

    The copy and the restored RNG state leave the run itself untouched. Returns None (with
    a warning) when the FLOP counter cannot follow the step: its module hooks refuse
    ``autograd.grad`` on a leaf, which a gradient penalty does.
    """
    state = rng_state(real.device)
    try:
        clone = copy.deepcopy(gan)
        with FlopCounterMode(display=False) as counter:
            for step in range(steps):
                clone.train_step(real, step)
        return int(counter.get_total_flops() // steps)
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0]
        console.warn(f"FLOPs per step not measured: torch's FLOP counter failed on this step ({reason})")
        return None
    finally:
        set_rng_state(state, real.device)
