"""What this machine offers a run: the CPUs it may use, how many other work keeps busy, native bf16. No torch."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from bench import console

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


def free_cpus() -> tuple[int, str]:
    """The usable CPUs that other work leaves free (at least 1), and how that was found."""
    cpus = usable_cpus()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(cpus))
    busy = busy_cpus(affinity)
    if busy is None:
        return cpus, f"{cpus} usable CPUs"
    return max(1, min(cpus, int(cpus - busy + 0.5))), f"{cpus} usable CPUs, {busy:.1f} busy with other work"


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


def load_average() -> float | None:
    """The one-minute load average, or None where the OS keeps none."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None
