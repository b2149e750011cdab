"""A trained run, rebuilt from its folder: the architecture from run.json, the generator from generator.pt."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from bench.contract import GAN, ArchSpec
from bench.errors import UsageError
from bench.layout import GENERATOR
from bench.record import RunRecord, read_record
from bench.storage import load_torch


def load_trained(run_dir: str | os.PathLike, load_spec: Callable[[str], ArchSpec],
                 device: torch.device) -> tuple[RunRecord, GAN]:
    """Rebuild a run's architecture from run.json and load its trained generator."""
    record = read_record(run_dir)
    path = Path(run_dir) / GENERATOR
    if not path.is_file():
        raise UsageError(f"{run_dir} has no {GENERATOR} (status: {record.status})")
    spec = load_spec(record.arch)
    gan = spec.build(spec.make_config(record.config.hparams), device)
    try:
        gan.generator.load_state_dict(load_torch(path, device))
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{path} cannot be loaded into {record.arch}'s generator: "
                         f"{type(exc).__name__}: {exc}") from None
    return record, gan
