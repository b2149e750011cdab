"""What a run leaves on disk: its folder, atomic writers, run.json and the environment.

Every file is written to a temporary file in the same folder and renamed over the target,
so a crash at any moment leaves the previous complete version or none, never half a file.
"""

from __future__ import annotations

import contextlib
import ctypes
import csv
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import torch

import bench
from bench.errors import UsageError

#: Bumped when run.json changes in a way older readers cannot follow.
SCHEMA_VERSION = 1

#: Keys every readable run.json has (dotted paths into nested objects).
REQUIRED_KEYS = (
    "schema_version", "arch", "status", "config.budget.kind", "config.budget.value", "config.batch_size",
    "config.seed", "config.hparams", "params", "timing.step_ms_median", "timing.images_per_s", "timing.wall_s",
    "env.device_name",
)
_MISSING = object()

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def write_csv(path: str | os.PathLike, header: list[str], rows: list[list[Any]]) -> None:
    """Write a CSV file atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def utc_stamp() -> str:
    """The current UTC time as ``YYYYMMDDTHHMMSSZ``, for folder names."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def utc_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def make_run_dir(out: str | os.PathLike, arch: str, seed: int) -> Path:
    """Create and return a new, unique ``<out>/<arch>-<UTC timestamp>-s<seed>`` folder."""
    return make_unique_dir(Path(out), f"{arch}-{utc_stamp()}-s{seed}")


def make_unique_dir(root: Path, base: str) -> Path:
    """Create and return ``root/base``, or ``root/base-N`` if that exists.

    Two processes starting in the same second get different folders: creation is
    exclusive (``mkdir`` fails if the folder exists) and a counter suffix is added on a clash.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {root} cannot be created: {exc.strerror or exc}") from None
    if not os.access(root, os.W_OK):
        raise UsageError(f"--out {root} is not writable")
    for n in range(1000):
        path = root / (base if n == 0 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise UsageError(f"--out {root} is not writable: {exc.strerror or exc}") from None
    raise UsageError(f"could not create a unique run folder under {root}")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
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


#: glibc's defaults hand every freed block over 128 KiB back to the kernel (mmap'd, or trimmed
#: off the heap top), so a training step's fresh gradients, weight casts and activations fault
#: their pages in again each step: measured on vanilla 60-970 minor page faults per step and on
#: dcgan 9,000-18,000, against 0-7 and 0-900 with freed memory kept for reuse.
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


def environment(device: torch.device) -> dict[str, Any]:
    """Describe the software and hardware a run used."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gan_bench": bench.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": gpu or _cpu_model(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "allocator": _allocator,
        "gpu": gpu,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "git_commit": _git_commit(),
        "argv": sys.argv[1:],
    }


def _get(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def read_record(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read a run folder's run.json, refusing damaged or incompatible ones with one clear line."""
    folder = Path(run_dir)
    file = folder / "run.json"
    if not file.is_file():
        raise UsageError(f"{folder} is not a run folder (no run.json)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{file}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{file}: damaged run.json (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{file}: damaged run.json (invalid JSON: {exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{file}: damaged run.json (expected a JSON object, got {type(data).__name__})")
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
        newer = "newer than this gan-bench reads" if version > SCHEMA_VERSION else "older than this gan-bench reads"
        fix = "upgrade gan-bench" if version > SCHEMA_VERSION else "rerun it, or read it with the gan-bench that wrote it"
        raise UsageError(f"{file}: schema_version {version} is {newer} ({SCHEMA_VERSION}); {fix}")
    missing = [key for key in REQUIRED_KEYS if _get(data, key) is _MISSING]
    if missing:
        raise UsageError(f"{file}: damaged run.json (missing {', '.join(missing)})")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UsageError(f"{file}: damaged run.json (schema_version {version!r} is not an integer)")
    for key, kinds in (("metrics", (dict, type(None))), ("evaluations", (list, type(None))), ("references", (dict, type(None)))):
        if not isinstance(data.get(key), kinds):
            raise UsageError(f"{file}: damaged run.json ({key} is a {type(data[key]).__name__})")
    if not all(isinstance(e, dict) for e in data.get("evaluations") or []):
        raise UsageError(f"{file}: damaged run.json (evaluations must be a list of objects)")
    return data
