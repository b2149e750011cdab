"""A run folder's fate when its process could not write it: killed before its result, or damaged on disk.

A run writes its own final status; these write one for it when it cannot: the plan driver
after a child process died without a word, a later command after a run killed before its first
checkpoint, and ``--skip-damaged`` for a seed whose checkpoint or folder is damaged. Each takes
the run folder's lock first, so a folder a live process holds is never touched. No torch: the
plan driver uses it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from bench.errors import UsageError
from bench.layout import CHECKPOINT, RUN_JSON, Status
from bench.record import RunRecord, read_record
from bench.storage import check_folder, folder_lock, lock_holder, refuse_link, verify_torch

#: A damaged checkpoint set aside by ``--skip-damaged`` keeps its bytes under this name, for inspection.
DAMAGED = CHECKPOINT + ".damaged"
#: What to do about a damaged or missing seed, after the line that names it.
DAMAGED_HINT = ("cannot be resumed: go on without it with --skip-damaged (it is marked failed; "
                "compare --resume --retry-failed, or a new bench run of that seed, trains it afresh)")


def mark_ended(run_dir: str | os.PathLike, status: Status, error: str, stop_signal: str | None = None) -> bool:
    """Give a run whose process died a final status in its run.json, if it still says ``running``.

    Returns whether run.json was changed (False: no readable run.json, or it already ended).
    """
    run_dir = Path(run_dir)
    with folder_lock(run_dir, f"recording how the run ended ({status})"):
        try:
            record = read_record(run_dir)
        except UsageError:
            return False
        if record.status is not Status.RUNNING:
            return False
        dataclasses.replace(record, status=status, error=error, stop_signal=stop_signal).write(run_dir)
        return True


def as_ended(run_dir: str | os.PathLike, record: RunRecord) -> RunRecord:
    """``record`` as a reader should take it: one that says ``running`` while no process holds its folder
    was left by a process that died, and reads as interrupted (the file is not changed)."""
    if record.status is not Status.RUNNING:
        return record
    try:
        if lock_holder(run_dir) is not None:
            return record
    except UsageError:
        return record
    return dataclasses.replace(record, status=Status.INTERRUPTED,
                               error=record.error or "its process ended without a result (killed?)")


def set_aside(run_dir: str | os.PathLike, why: str) -> None:
    """Mark a run that cannot be resumed failed (``why``) and move its checkpoint aside, so nothing resumes from it."""
    run_dir = Path(run_dir)
    with folder_lock(run_dir, "setting a damaged checkpoint aside"):
        checkpoint = run_dir / CHECKPOINT
        if checkpoint.is_file():
            refuse_link(run_dir / DAMAGED)
            os.replace(checkpoint, run_dir / DAMAGED)
        try:
            record = read_record(run_dir)
        except UsageError:
            return
        dataclasses.replace(record, status=Status.FAILED, error=why).write(run_dir)


def member_problem(run_dir: Path, rel: str, seed: int, stack_id: str) -> str | None:
    """Why the member ``rel`` (seed ``seed``) of the stack ``run_dir`` trained in cannot resume with it: its
    folder is missing or its checkpoint fails its checksum; None if it can.

    Raises:
        UsageError: run.json names a member outside the folder that holds ``run_dir``, or the member holds a link.
    """
    if Path(rel).name != rel or rel in ("", ".", ".."):
        raise UsageError(f"{run_dir}: {RUN_JSON} names stack member {rel!r}, outside the folder that holds "
                         "the run; gan-bench writes only inside the folders you name and changed nothing")
    path = run_dir.parent / rel
    if not path.is_dir():
        return f"seed {seed}'s run folder {path} of stack {stack_id} is missing"
    check_folder(path)
    return verify_torch(path / CHECKPOINT) if (path / CHECKPOINT).is_file() else None
