"""Fixtures only (helpers live in tests/helpers.py): small, fast runs on the CPU."""

from __future__ import annotations

import os

# One torch thread everywhere, before torch starts: runs compared bit for bit must use the same
# thread count, and the default (the CPUs other work leaves free) depends on the machine's load.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # The CI machine has 2 cores; fix the thread count so results do not depend on it.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def float64():
    """Build and train in float64, where summation order no longer shows."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
