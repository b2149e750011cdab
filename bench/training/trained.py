"""A trained run, rebuilt from its folder: the architecture from run.json, the generator from generator.pt
and whatever else ``generate()`` needs from sampling.pt."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from bench import console
from bench.contract import GAN, ArchSpec
from bench.errors import UsageError
from bench.layout import GENERATOR, SAMPLING
from bench.record import RunRecord, read_record
from bench.storage import load_torch
from bench.training.checks import build_gan


def load_trained(run_dir: str | os.PathLike, load_spec: Callable[[str], ArchSpec],
                 device: torch.device) -> tuple[RunRecord, GAN]:
    """Rebuild a run's architecture from run.json and load its trained generator and sampling state."""
    record = read_record(run_dir)
    path = Path(run_dir) / GENERATOR
    if not path.is_file():
        raise UsageError(f"{run_dir} has no {GENERATOR} (status: {record.status})")
    spec = load_spec(record.arch)
    gan = build_gan(spec, spec.make_config(record.config.hparams), device)
    try:
        gan.generator.load_state_dict(load_torch(path, device))
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{path} cannot be loaded into {record.arch}'s generator: "
                         f"{type(exc).__name__}: {exc}") from None
    _load_sampling_state(Path(run_dir), record.arch, gan, device)
    return record, gan


def _load_sampling_state(run_dir: Path, arch: str, gan: GAN, device: torch.device) -> None:
    """Load sampling.pt into ``gan``; without one, warn if the architecture samples from more than its generator."""
    path = run_dir / SAMPLING
    if not path.is_file():
        if gan.sampling_state():
            console.warn(f"{run_dir} has no {SAMPLING} (written by gan-bench before it kept one): {arch} generates "
                         "from state beyond its generator, which is evaluated as freshly built, not as trained")
        return
    try:
        gan.load_sampling_state(load_torch(path, device))
    except Exception as exc:
        raise UsageError(f"{path} cannot be loaded into {arch}: {type(exc).__name__}: {exc}") from None
