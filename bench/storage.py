"""Files that are never half-written, never written through a link, and folders that are never shared.

Every file is written to a temporary file in the same folder and renamed over the target, so
a crash at any moment leaves the previous complete version or none. Run and plan folders
are created exclusively, so two processes starting in the same second get different ones.

Nothing is written or removed outside the folders the user named: a file to be replaced that
is a symbolic link (or anything but a regular file) is refused, as is a folder handed back to
the tool (``--resume``) that holds one, so a link planted in a run folder can never point a
write at a file elsewhere. Torch files carry a SHA-256 of their contents, checked on load.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import socket
import stat
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from collections.abc import Iterator

from bench.errors import DiskFullError, UsageError
from bench.layout import LOCK

_UMASK = os.umask(0)
os.umask(_UMASK)
#: The suffix of :func:`atomic_path`'s temporary files (``.<name>.<random>.tmp``).
TMP_SUFFIX = ".tmp"


#: The errors of a write that found no room: no space, no quota, or the file-size limit.
_NO_ROOM = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file too large for the file-size limit (ulimit -f)"}


def no_room(path: str | os.PathLike, exc: OSError) -> DiskFullError:
    """The one line a write that found no room ends with."""
    return DiskFullError(f"no space left for {path}: {_NO_ROOM[exc.errno]}; free some space or choose another --out")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds.

    Raises:
        DiskFullError: the device (or the file-size limit) left no room; the temporary file is removed.
    """
    target = Path(path)
    refuse_link(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
    except OSError as exc:
        if exc.errno in _NO_ROOM:
            raise no_room(target, exc) from None
        raise
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
            raise no_room(target, exc) from None
        raise


def refuse_link(path: str | os.PathLike) -> None:
    """Refuse to write or remove ``path`` if it is a symbolic link or anything but a regular file.

    Raises:
        UsageError: one line naming the path; nothing was written.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise UsageError(f"{path} is a symbolic link; gan-bench writes only regular files inside the folders you "
                         "name and changed nothing (remove the link, or choose another folder)")
    if not stat.S_ISREG(mode):
        raise UsageError(f"{path} is not a regular file; gan-bench changed nothing (remove it, or choose another "
                         "folder)")


def check_folder(folder: str | os.PathLike) -> None:
    """Refuse a folder handed back to the tool that holds a symbolic link or a special file at any depth.

    Called before anything is written into a folder the tool did not just make (a resumed run
    or plan): every file it will replace, and every folder it will write into, then lies inside.

    Raises:
        UsageError: one line naming the first such entry; nothing was written.
    """
    root = Path(folder)
    for here, folders, files in os.walk(root):  # does not follow links to folders
        for name in sorted(folders + files):
            path = Path(here) / name
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise UsageError(f"{root} holds a symbolic link, {path}; gan-bench writes only regular files inside "
                                 "the folders you name and changed nothing (remove the link)")
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise UsageError(f"{root} holds {path}, which is neither a file nor a folder; gan-bench changed "
                                 "nothing (remove it)")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that writes killed mid-way (``kill -9``) left in ``folder``."""
    stale = [p for p in Path(folder).glob(f".*{TMP_SUFFIX}") if stat.S_ISREG(os.lstat(p).st_mode)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def check_writable(path: str | os.PathLike, option: str = "--out", example: str | None = None) -> Path:
    """Refuse, before any work is done, a file that could not be written; create its folder.

    Tried with a temporary file beside it, as :func:`atomic_path` will write it.

    Raises:
        UsageError: ``path`` is a folder, its folder cannot be created, or it is not writable.
    """
    target = Path(path)
    if target.is_dir() and not target.is_symlink():
        suggestion = f", e.g. {target / example}" if example else ""
        raise UsageError(f"{option} {target} is a folder; give a file name{suggestion}")
    above = next((p for p in target.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UsageError(f"{option} {target} cannot be written: {above} is a file, not a folder")
    refuse_link(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
    except OSError as exc:
        raise UsageError(f"{option} {target} cannot be written: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(tmp)
    return target


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


#: The line a torch file ends with: its SHA-256 over everything before the line. ``torch.load`` reads the
#: archive and ignores what follows it, so the files stay ordinary torch files.
CHECKSUM_MARK = b"\ngan-bench sha256 "
_TRAILER = len(CHECKSUM_MARK) + 64 + 1


def _checked_payload(path: str | os.PathLike, data: bytes) -> bytes:
    """``data`` without its checksum line, once the checksum matches (files without one are taken as they are).

    Raises:
        UsageError: the checksum does not match: the file changed after gan-bench wrote it.
    """
    trailer = data[-_TRAILER:]
    if len(data) < _TRAILER or not trailer.startswith(CHECKSUM_MARK) or not trailer.endswith(b"\n"):
        return data  # written before checksums, or by another program
    payload, recorded = data[:-_TRAILER], trailer[len(CHECKSUM_MARK):-1].decode("ascii", "replace")
    if hashlib.sha256(payload).hexdigest() != recorded:
        raise UsageError(f"{path} is damaged: its contents do not match the SHA-256 gan-bench wrote with it "
                         "(the file changed on disk after it was written)")
    return payload


def verify_torch(path: str | os.PathLike) -> str | None:
    """Why the torch file at ``path`` cannot be trusted (missing, unreadable, checksum wrong), or None."""
    try:
        _checked_payload(path, Path(path).read_bytes())
    except UsageError as exc:
        return str(exc)
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror or exc})"
    return None


def load_torch(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a torch file gan-bench wrote: its checksum checked, then tensors and plain containers only
    (``weights_only=True``).

    Raises:
        UsageError: the checksum does not match (the file was damaged), or the file holds other Python
            objects, so it is no gan-bench file, and unpickling it could run code; it is not loaded.
        Exception: whatever torch raises for a missing or damaged file.
    """
    import pickle
    import warnings

    import torch

    payload = _checked_payload(path, Path(path).read_bytes())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. an unusual pickle protocol: the refusal below says enough
            return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise
        # Not torch's message: it suggests weights_only=False, which would run whatever the file holds.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        holds = f"Python objects ({found.group(1)})" if found else "Python objects"
        raise UsageError(f"{path} is not a gan-bench file: it holds {holds} beyond tensors, and loading it "
                         "may be unsafe; it was not loaded") from None


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically, followed by its checksum line.

    Serialized in memory first: given a path, torch would name the archive's root folder after
    the (random) temporary file, so two saves of the same tensors would differ in bytes; and a
    full disk then surfaces as Python's own OSError rather than torch's "enforce fail".
    """
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    write_bytes(path, payload + CHECKSUM_MARK + hashlib.sha256(payload).hexdigest().encode() + b"\n")


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


def _open_lock(path: Path, flags: int) -> int:
    """Open a lock file without following a link, and refuse anything but a regular file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666 & ~_UMASK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_link(path)
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        refuse_link(path)
    return fd


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock while the block runs; refuse at once if another process holds it.

    An OS lock (``flock``) on ``folder/.gan-bench.lock``: it ends with the process that holds it,
    so a lock left by a killed process is simply taken over. The file names the holder. A lock
    file that is a symbolic link is refused, never followed.

    Raises:
        UsageError: another process holds the lock (the message names it), or the lock file is
            not a regular file.
    """
    path = Path(folder) / LOCK
    fd = _open_lock(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            raise _in_use(folder, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} ({what}, since {utc_iso()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def lock_holder(folder: str | os.PathLike) -> str | None:
    """Who holds ``folder``'s lock now (its line, e.g. ``process 123 on host (...)``), or None if nobody does.

    Asks without taking the lock for longer than the question, and creates no lock file.

    Raises:
        UsageError: the lock file is a symbolic link or not a regular file.
    """
    path = Path(folder) / LOCK
    try:
        fd = _open_lock(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def check_not_held(folder: str | os.PathLike) -> None:
    """Refuse ``folder`` if a live process holds its lock, as :func:`folder_lock` would, without taking it.

    Raises:
        UsageError: the line naming the holder, or the lock file is not a regular file.
    """
    holder = lock_holder(folder)
    if holder is not None:
        raise _in_use(folder, holder)


def _in_use(folder: str | os.PathLike, holder: str) -> UsageError:
    return UsageError(f"{folder} is in use by {holder}; wait for it to end, or stop it")
