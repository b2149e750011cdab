"""Fixtures only (helpers live in tests/helpers.py): small, fast runs on the CPU."""

from __future__ import annotations

import os
import tempfile

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


@pytest.fixture(autouse=True, scope="session")
def _temp_folder(tmp_path_factory):
    """What the suite's code writes to the temp folder (a plugin error's crash log) goes to a folder of
    pytest's, which pytest prunes, not to the system's: in this process, and in the command lines the tests
    start (``helpers.run_cli`` passes it as TMPDIR)."""
    saved = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("temp"))
    yield
    tempfile.tempdir = saved


@pytest.fixture
def float64():
    """Build and train in float64, where summation order no longer shows."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
