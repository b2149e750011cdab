"""Where and how tensors run: the device, the precision, the random state, the memory peak."""

from __future__ import annotations

import contextlib
import resource

import torch

from bench.errors import UsageError

#: The autocast dtype of each precision (fp32: no autocast).
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """Turn ``auto|cpu|cuda[:N]`` into a device, refusing CUDA where there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name} asked for, but CUDA is not available here; use --device cpu")
        return torch.device(name)
    raise UsageError(f"unknown --device {name!r}; choose from: auto, cpu, cuda")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a training step runs in at ``precision``.

    No cast cache: it keeps each weight's low-precision copy for the whole step, so a network
    used again after an in-place update (wgan's critic after its step and clipping) would run on
    stale weights; CUDA graphs would also replay stale copies.
    """
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global RNG states a training step may draw from."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def peak_memory_bytes(device: torch.device) -> int:
    """The allocator's peak on CUDA, else this process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
