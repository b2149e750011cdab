"""Fixtures only (helpers live in tests/helpers.py): small, fast runs on the CPU."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # The CI machine has 2 cores; fix the thread count so results do not depend on it.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
