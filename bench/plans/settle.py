"""Before a plan (re)starts its unfinished runs: which of their folders it may touch, and which cannot resume.

A run folder outside the plan folder, or one a live process holds, is refused; a run whose
checkpoint fails its checksum, or a seed whose folder a resuming stack names but that is gone,
is refused too, or with ``--skip-damaged`` marked failed so the rest can finish. All of it
before anything is trained, removed or adopted. No torch: the plan driver uses it.
"""

from __future__ import annotations

from pathlib import Path

from bench import console
from bench.errors import BenchError, UsageError
from bench.layout import CHECKPOINT, Status
from bench.plans.plan import Plan, PlanEntry
from bench.record import read_record
from bench.runfolder import DAMAGED_HINT, member_problem, set_aside
from bench.storage import check_not_held


def settle_run_folders(plan: Plan, entries: list[PlanEntry], skip_damaged: bool) -> None:
    """Refuse ``entries``' run folders that the plan must not touch; with ``skip_damaged``, mark the runs that
    cannot resume failed instead of refusing them (and save the plan).

    Raises:
        UsageError: one line naming the folder and what to do.
    """
    folder = plan.folder.resolve()
    for entry in entries:
        path = plan.run_path(entry)
        if path is None or not (path.is_dir() or path.is_symlink()):
            continue
        if path.is_symlink() or path.resolve().parent != folder:
            raise UsageError(f"{plan.folder}: the run folder of {entry.describe()}, {path}, lies outside the plan "
                             "folder; gan-bench writes only inside the folders you name and changed nothing")
        check_not_held(path)
    problems = _cannot_resume(plan, entries)
    if problems and not skip_damaged:
        entry, why = problems[0]
        raise UsageError(f"{why}; {entry.describe() if entry else 'that seed'} {DAMAGED_HINT}")
    for entry, why in problems:
        if entry is None:
            continue  # a stack member this plan does not list: its stack resumes without it
        path = plan.run_path(entry)
        if path is not None and path.is_dir():
            set_aside(path, why)
        entry.status, entry.error = Status.FAILED, why
        console.warn(f"{entry.describe()}: {why}; marked failed (--retry-failed trains it afresh)")
    plan.save()


def _cannot_resume(plan: Plan, entries: list[PlanEntry]) -> list[tuple[PlanEntry | None, str]]:
    """The entries that cannot resume, and why: a checkpoint whose checksum fails, or a stack member's folder that
    is gone (None for a member the plan does not list). Every resumable stack's members are checked by its runs."""
    why_by_path: dict[Path, str] = {}
    checked: set[Path] = set()  # a stack's members are named by each of its runs: each is read once
    for entry in entries:
        path = plan.run_path(entry)
        if entry.status is Status.FAILED or path is None or not (path / CHECKPOINT).is_file():
            continue
        try:
            stack = read_record(path).stack
        except BenchError:
            stack = None  # the run's own resume says what is wrong with its record
        members = zip(stack.seeds, stack.runs, strict=False) if stack else [(entry.seed, path.name)]
        for seed, rel in members:
            member = (path.parent / rel).resolve()
            if member in checked:
                continue
            checked.add(member)
            why = member_problem(path, rel, seed, stack.id if stack else "-")
            if why:
                why_by_path[member] = why
    problems: list[tuple[PlanEntry | None, str]] = []
    for entry in entries:
        path = plan.run_path(entry)
        if path is not None and path.resolve() in why_by_path:
            problems.append((entry, why_by_path.pop(path.resolve())))
    return problems + [(None, why) for why in why_by_path.values()]
