"""Files that are never half-written, and folders that are never shared.

Every file is written to a temporary file in the same folder and renamed over the target, so
a crash at any moment leaves the previous complete version or none. Run and plan folders
are created exclusively, so two processes starting in the same second get different ones.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from collections.abc import Iterator

from bench.errors import UsageError

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


def check_writable(path: str | os.PathLike, flag: str) -> None:
    """Raise :class:`UsageError` unless a file can be written at ``path`` (its folder is made if missing).

    Tried with a temporary file beside it, as :func:`atomic_path` will write it, so that a
    command refuses at once rather than after its work.
    """
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name")
    try:
        if not target.parent.exists():
            target.parent.mkdir(parents=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"{flag} {path} cannot be written: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


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


def load_torch(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a torch file gan-bench wrote: tensors and plain containers only (``weights_only=True``).

    Raises:
        UsageError: the file holds other Python objects, so it is no gan-bench file, and
            unpickling it could run code; it is not loaded.
        Exception: whatever torch raises for a missing or damaged file.
    """
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. an unusual pickle protocol: the refusal below says enough
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise
        # Not torch's message: it suggests weights_only=False, which would run whatever the file holds.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        holds = f"Python objects ({found.group(1)})" if found else "Python objects"
        raise UsageError(f"{path} is not a gan-bench file: it holds {holds} beyond tensors, and loading it "
                         "may be unsafe; it was not loaded") from None


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically.

    Through a file handle: given a path, torch names the archive's root folder after the
    (random) temporary file, and two saves of the same tensors would differ in bytes.
    """
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # tensors and arrays
        return obj.tolist()
    if hasattr(obj, "item"):  # numpy scalars
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

    Creation is exclusive (``mkdir`` fails if the folder exists) and a counter suffix is added
    on a clash, so two processes never get the same folder.
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
