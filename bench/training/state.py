"""Everything a checkpoint holds, declared once, so that resuming cannot drift from saving."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from bench.contract import GAN
from bench.data import SamplerState
from bench.device import rng_state, set_rng_state
from bench.errors import UsageError
from bench.record import Evaluation, Metrics
from bench.schema import SchemaError, from_plain, to_plain
from bench.storage import load_torch, save_torch


@dataclass
class TrainState:
    """A run's progress: what it has trained, measured and evaluated so far.

    A checkpoint is these fields under their own names (as JSON-like data), plus the model's
    ``gan`` state and the global ``rng`` states: both directions are derived from this one
    declaration, and checkpoints written by gan-bench 0.1.0 have exactly these keys.
    """

    step: int = 0
    sampler: SamplerState = field(default_factory=SamplerState)
    #: One row per batch: ``step`` and every value the step returned.
    history: list[dict[str, float]] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    times_ms: list[float] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    #: Training wall-clock seconds, evaluation and checkpoints excluded.
    train_wall_s: float = 0.0
    eval_s: float = 0.0
    flops_per_step: int | None = None
    last_metrics: Metrics | None = None
    #: This process's CPU seconds over the training time (checkpoints of gan-bench 0.1.0 lack it).
    train_cpu_s: float = 0.0

    #: Fields a checkpoint may lack: those added after the first release, which take their defaults.
    _added: ClassVar[frozenset[str]] = frozenset({"train_cpu_s"})

    def save(self, path: str | os.PathLike, gan: GAN, device: torch.device,
             rng: dict[str, torch.Tensor] | None = None) -> None:
        """Write a checkpoint of this state, the model and its RNG (atomically).

        ``rng``: the run's RNG states, when they are not the process's global ones (a seed of a stack).
        """
        data: dict[str, Any] = {f.name: to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        save_torch(path, {**data, "gan": gan.state_dict(), "rng": rng_state(device) if rng is None else rng})

    @classmethod
    def load(cls, path: str | os.PathLike, gan: GAN, device: torch.device) -> TrainState:
        """Read a checkpoint: restore ``gan`` and the global RNG, return the state.

        Raises:
            UsageError: the file is not a readable checkpoint, a key is missing or mistyped, or
                the model does not fit it.
        """
        state, gan_state, rng = cls.read(path, device)
        with damaged_model(path):
            gan.load_state_dict(gan_state)
            set_rng_state(rng, device)
        return state

    @classmethod
    def read(cls, path: str | os.PathLike, device: torch.device) -> tuple[TrainState, dict[str, Any], Any]:
        """Read a checkpoint without applying it: the state, the model's state dict and the RNG states.

        Raises:
            UsageError: the file is not a readable checkpoint, or a key is missing or mistyped.
        """
        try:
            ckpt = load_torch(path, device)
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"{path} cannot be read ({type(exc).__name__}: {exc}); "
                             "the run cannot be resumed") from None
        if not isinstance(ckpt, dict):
            raise UsageError(f"{path} is not a gan-bench checkpoint (a {type(ckpt).__name__}, not a dict)")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [k for k in (*names, "gan", "rng") if k not in ckpt and k not in cls._added]
        if missing:
            raise UsageError(f"{path} is damaged (missing {', '.join(missing)}); the run cannot be resumed")
        try:
            state = from_plain(cls, {name: ckpt[name] for name in names if name in ckpt})
        except SchemaError as exc:
            raise UsageError(f"{path} is damaged ({exc}); the run cannot be resumed") from None
        return state, ckpt["gan"], ckpt["rng"]


@contextlib.contextmanager
def damaged_model(path: str | os.PathLike) -> Iterator[None]:
    """Report a model or RNG state from ``path`` that will not load as a :class:`UsageError`."""
    try:
        yield
    except Exception as exc:
        raise UsageError(f"{path} does not fit this architecture ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); the run cannot be resumed") from None
