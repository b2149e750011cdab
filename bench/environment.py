"""The machine a run used, recorded with every result, and the process-wide allocator setting."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import bench
from bench import console

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


#: How long the CPUs are watched to see how many are busy, before a run chooses its threads.
BUSY_WINDOW_S = 0.2
#: CPU flags of native bf16 matrix arithmetic (x86: AVX-512 BF16 or AMX; Arm: BF16).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
_warned_bf16 = False


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity, capped by a cgroup CPU quota (containers)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cpus, int(quota + 0.999)) if quota else cpus)


def _cgroup_quota() -> float | None:
    """The CPU quota of this process's cgroup in CPUs (v2 ``cpu.max``, v1 ``cfs_quota_us``), if any."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    return None


def busy_cpus(cpus: set[int], window_s: float = BUSY_WINDOW_S) -> float | None:
    """How many of ``cpus`` other work keeps busy, watched for ``window_s`` (None where /proc/stat is not)."""
    before = _cpu_times(cpus)
    time.sleep(window_s)
    after = _cpu_times(cpus)
    if not before or not after:
        return None
    busy = 0.0
    for cpu, (idle_a, total_a) in before.items():
        idle_b, total_b = after.get(cpu, (idle_a, total_a))
        if total_b > total_a:
            busy += 1 - (idle_b - idle_a) / (total_b - total_a)
    return busy


def _cpu_times(cpus: set[int]) -> dict[int, tuple[int, int]]:
    """``{cpu: (idle and iowait ticks, all ticks)}`` from /proc/stat."""
    times = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                ticks = [int(f) for f in fields[:8]]
                times[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))
    return times


def default_threads() -> tuple[int, str]:
    """The torch threads a CPU run uses when ``--threads`` is not given, and why.

    The CPUs this process may use that other work leaves free: torch's default, one thread per
    core, stalls when another job holds a core (every parallel region waits for the thread
    that lost its core), which on a busy 2-core machine made batches several times slower
    than one thread. ``OMP_NUM_THREADS``, when set, is the user's choice and is kept.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    cpus = usable_cpus()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(cpus))
    busy = busy_cpus(affinity)
    if busy is None:
        return cpus, f"{cpus} usable CPUs"
    threads = max(1, min(cpus, int(cpus - busy + 0.5)))
    return threads, f"{cpus} usable CPUs, {busy:.1f} busy with other work"


def cpu_flags() -> set[str]:
    """The CPU's feature flags, from /proc/cpuinfo (empty where it is not)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    return set()


def warn_if_bf16_is_emulated(flags: set[str] | None = None) -> bool:
    """Warn (once per process) that bf16 on this CPU runs without native instructions; return whether it does."""
    global _warned_bf16
    flags = cpu_flags() if flags is None else flags
    native = [f for f in BF16_FLAGS if f in flags]
    if native or not flags:
        return False
    if not _warned_bf16:
        _warned_bf16 = True
        detected = ", ".join(sorted(f for f in flags if f.startswith(("avx", "amx", "sve", "neon")))) or "none"
        console.warn(f"--precision bf16 on a CPU without native bf16 arithmetic (no {', '.join(BF16_FLAGS)} "
                     f"among its flags; vector extensions found: {detected}): bf16 is emulated there and usually "
                     "slower than fp32")
    return True


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
        "argv": sys.argv[1:],
    }
