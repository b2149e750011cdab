"""The machine a run used, recorded with every result, and the process-wide allocator setting."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

import bench
from bench import console
from bench.machine import free_cpus

#: glibc hands every freed block over 128 KiB back to the kernel by default, so a training
#: step's fresh gradients, weight casts and activations would fault their pages in again on
#: every step. Freed memory up to this size is kept for reuse instead.
MALLOC_KEEP_BYTES = 1 << 30
#: Set ``GAN_BENCH_MALLOC=default`` to leave the C allocator as the system configured it.
MALLOC_ENV = "GAN_BENCH_MALLOC"
_allocator = "default"


def tune_allocator() -> str:
    """Keep freed memory in this process for reuse instead of returning it to the kernel.

    Process-wide (so ``bench perf`` calls it before its first contender: the study's loop gets
    the same allocator as the runner). On glibc only; a no-op elsewhere or when opted out.
    Returns the setting, which every run.json records under ``env.allocator``.
    """
    global _allocator
    if _allocator != "default" or os.environ.get(MALLOC_ENV, "").lower() == "default":
        return _allocator
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        if libc.mallopt(m_mmap_threshold, MALLOC_KEEP_BYTES) and libc.mallopt(m_trim_threshold, MALLOC_KEEP_BYTES):
            _allocator = f"glibc, freed memory kept (mmap and trim thresholds {MALLOC_KEEP_BYTES >> 20} MiB)"
    return _allocator


def run_threads(device: torch.device, given: int | None = None) -> tuple[int, str]:
    """The torch threads a run on ``device`` trains with, and why: ``--threads`` where ``given``, torch's own
    on a GPU (the host threads only feed it), else :func:`default_threads`. The one rule of every run,
    every timing phase and every measurement."""
    if given:
        return given, "--threads"
    if device.type != "cpu":
        return torch.get_num_threads(), f"torch's default on {device.type}"
    return default_threads()


def default_threads() -> tuple[int, str]:
    """The torch threads a CPU run uses when ``--threads`` is not given, and why.

    The CPUs this process may use that other work leaves free: torch's default, one thread per
    core, stalls when another job holds a core (every parallel region waits for the thread
    that lost its core), which on a busy 2-core machine made batches several times slower
    than one thread. ``OMP_NUM_THREADS``, when set, is the user's choice and is kept.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    return free_cpus()


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The commit of the gan-bench checkout in use (``-dirty`` with local changes), if it is one."""
    here = Path(bench.__file__).resolve().parent.parent
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
        if out.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=here, capture_output=True, text=True, timeout=5, check=False,
            ).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    return None


def environment(device: torch.device) -> dict[str, Any]:
    """Describe the software and hardware a run used (run.json's ``env``)."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    program, argv = console.command_carried_out()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gan_bench": bench.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": gpu or cpu_model(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "allocator": _allocator,
        "gpu": gpu,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "git_commit": git_commit(),
        "program": program,
        "argv": argv,
    }
