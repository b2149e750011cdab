"""Shared fixtures: small, fast runs on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.registry import default_registry

REPO = Path(__file__).resolve().parent.parent


def architecture_names() -> list[str]:
    return default_registry().names()


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # The CI machine has 2 cores; fix the thread count so results do not depend on it.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m bench ARGS`` in a subprocess and capture its output."""
    env = dict(os.environ, COLUMNS="120", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )
