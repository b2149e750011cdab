"""One driver for every plan: it hands unfinished runs to a backend, retries failures, keeps the plan current
and shows where the plan stands.

``bench compare`` is a plan with one hyperparameter point per architecture and no retries;
``bench sweep`` adds points, retries and the choice of backend. Both resume the same way:
finished runs are skipped, interrupted ones continue from their checkpoints, and a run that
finished before the plan heard of it is adopted rather than trained again. No torch here:
the backends bring it where the runs train.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from typing import Any, Protocol

from bench import console, tables
from bench.config import PlanSettings
from bench.errors import BenchError
from bench.layout import CHECKPOINT, Status
from bench.plans.plan import Outcome, Plan, PlanEntry
from bench.record import read_record
from bench.stop import StopRequest
from bench.plans.settle import settle_run_folders
from bench.storage import check_folder, folder_lock


class Backend(Protocol):
    """Where planned runs train: here one after another, or as tasks on a cluster."""

    #: Whether runs train elsewhere, so a live table may take the terminal (local runs draw their own progress).
    live: bool

    def describe(self) -> str:
        """Where and how the runs train, for the plan's first line."""

    def check(self, settings: PlanSettings) -> None:
        """Refuse settings this backend cannot honour (before anything is written)."""

    def start(self) -> None:
        """Get ready (start or join a cluster) before the plan folder is made."""

    def stop(self) -> None:
        """Release what :meth:`start` took."""

    def submit(self, driver: Driver, index: int, attempt: int) -> None:
        """Take attempt ``attempt`` of entry ``index``; report through ``driver.started``/``finished``."""

    def run(self, driver: Driver) -> None:
        """Train what was submitted (and what is resubmitted meanwhile) until done or a stop is requested."""


class Driver:
    """Runs a plan's unfinished entries on a backend.

    Args:
        retries: how often a failed run is tried again before it is recorded as failed.
        stop: the stop request shared with the runs (signals are handled while the plan runs).
        retry_failed: train the runs recorded as failed again, afresh (``--retry-failed``).
        skip_damaged: mark the runs whose checkpoint or folder is damaged or missing as failed and go
            on without them (``--skip-damaged``), instead of refusing the plan.
    """

    def __init__(self, plan: Plan, backend: Backend, retries: int = 0, stop: StopRequest | None = None, *,
                 retry_failed: bool = False, skip_damaged: bool = False):
        self.plan = plan
        self.backend = backend
        self.retries = retries
        self.retry_failed = retry_failed
        self.skip_damaged = skip_damaged
        self.stop = stop or StopRequest("the running runs checkpoint and stop after their batch")
        self.attempt: dict[int, int] = {}  # the attempt each entry is on in this session
        self.started_at: dict[int, float] = {}
        self.ended_at: dict[int, float] = {}
        self.nodes: dict[int, str] = {}
        self.view = PlanView(self)

    @property
    def entries(self) -> list[PlanEntry]:
        return self.plan.runs

    def run(self) -> int:
        """Run every unfinished entry; return the exit status (1 if a run failed, 128+N if interrupted).

        The plan folder is locked meanwhile: a second process on it is refused, naming this one. Before
        anything is written, the folder is checked: no links, no run folder held by a live process, no
        damaged checkpoint (unless ``skip_damaged``).
        """
        with folder_lock(self.plan.folder, f"bench {self.plan.kind}"):
            check_folder(self.plan.folder)
            unfinished = [e for e in self.entries if not e.status.finished
                          or (self.retry_failed and e.status is Status.FAILED)]
            settle_run_folders(self.plan, unfinished, self.skip_damaged)
            return self._run()

    def _run(self) -> int:
        if self.retry_failed:
            for entry in self.entries:
                if entry.status is Status.FAILED:
                    self._discard(entry)  # a failed run is retried afresh
                    entry.status, entry.error = Status.PENDING, None
        todo = [i for i, e in enumerate(self.entries) if not e.status.finished and not self._adopt(e)]
        self.plan.save()
        console.err.print(f"{self.plan.kind} {self.plan.folder}: {len(self.entries)} runs, {len(todo)} to go, "
                          f"{self.backend.describe()}", soft_wrap=True, markup=False, highlight=False)
        with self.stop.handling_signals(), self.view:
            for index in todo:
                self._queue(index, 1)
            self.backend.run(self)
        if self.stop.requested:
            console.err.print(f"interrupted; continue with: {console.program()} {self.plan.kind} --resume "
                              f"{self.plan.folder}", markup=False, highlight=False, soft_wrap=True)
            return 128 + self.stop.signal
        return self._closing_status()

    def _closing_status(self) -> int:
        """0 when every run earned its result; else 1, with the command that carries on."""
        command = f"{console.program()} {self.plan.kind} --resume {self.plan.folder}"
        killed = [e for e in self.entries if e.status is Status.INTERRUPTED]
        failed = [e for e in self.entries if e.status is Status.FAILED]
        if killed:
            console.err.print(f"{len(killed)} run(s) ended without a result ({killed[0].error or 'interrupted'}); "
                              f"continue them with: {command}", markup=False, highlight=False, soft_wrap=True)
        if failed:
            console.err.print(f"{len(failed)} run(s) failed; train them again with: {command} --retry-failed",
                              markup=False, highlight=False, soft_wrap=True)
        return 1 if killed or failed else 0

    def run_dir(self, index: int) -> str | None:
        """Entry ``index``'s run folder as an absolute path (for backends, whose tasks may run elsewhere)."""
        path = self.plan.run_path(self.entries[index])
        return str(path.resolve()) if path is not None else None

    def task_entry(self, index: int) -> PlanEntry:
        """Entry ``index`` as a task takes it: a copy whose run folder is an absolute path."""
        return dataclasses.replace(self.entries[index], hparams=dict(self.entries[index].hparams),
                                   run_dir=self.run_dir(index))

    def started(self, index: int, attempt: int, run_dir: str | None, node: str | None) -> None:
        """A backend says attempt ``attempt`` of entry ``index`` is training (in ``run_dir``, on ``node``)."""
        entry = self.entries[index]
        if entry.status is not Status.QUEUED or self.attempt.get(index) != attempt:
            return  # a late message about an attempt that has already ended
        entry.status = Status.RUNNING
        if run_dir is not None:
            self.plan.set_run_dir(entry, run_dir)  # saved now, so --resume finds its checkpoint if this process dies
        self.started_at[index] = time.monotonic()
        if node:
            self.nodes[index] = node
        self.plan.save()
        self.view.started(entry.describe() + (f" (attempt {attempt})" if attempt > 1 else "")
                          + (f" on {node}" if node else ""), index)

    def finished(self, index: int, attempt: int, outcome: Outcome) -> None:
        """A backend returns the outcome of attempt ``attempt`` of entry ``index``: record it, or retry."""
        entry = self.entries[index]
        if self.stop.requested and outcome.status is not Status.COMPLETED and not outcome.run_dir:
            entry.status = Status.PENDING  # stopped before it began: it simply waits for --resume
            self.plan.save()
            return
        self.ended_at[index] = time.monotonic()
        entry.status, entry.error, entry.attempts = outcome.status, outcome.error, entry.attempts + 1
        self.plan.set_run_dir(entry, outcome.run_dir)
        took = self._took(index)
        if outcome.status.earned:
            self.plan.save()
            more = f" at step {outcome.diverged_at_step}" if outcome.status is Status.DIVERGED else ""
            self.view.event(f"{outcome.status}{more} {entry.describe()}{took}", index)
            return
        if not self.stop.requested and attempt <= self.retries:
            self.view.event(f"{outcome.status} {entry.describe()}{took}: {entry.error}; retrying "
                            f"(attempt {attempt + 1} of {self.retries + 1})", index)
            path = self.plan.run_path(entry)
            if not (path is not None and (path / CHECKPOINT).is_file()):
                self._discard(entry)  # nothing to resume: the retry starts afresh
            self._queue(index, attempt + 1)
            return
        self.plan.save()
        shown = entry.status is Status.FAILED or (entry.status is Status.INTERRUPTED and not self.stop.requested)
        error = f": {entry.error}" if entry.error and shown else ""
        self.view.event(f"{entry.status} {entry.describe()}{took}{error}", index)

    def counts(self) -> dict[str, int]:
        """How many entries are queued, running, finished, failed and interrupted."""
        counts = {"queued": 0, "running": 0, "finished": 0, "failed": 0, "interrupted": 0}
        for e in self.entries:
            key = "queued" if e.status.waiting else "finished" if e.status.earned else e.status.value
            counts[key] = counts.get(key, 0) + 1
        return counts

    def _queue(self, index: int, attempt: int) -> None:
        self.entries[index].status = Status.QUEUED
        self.attempt[index] = attempt
        self.started_at.pop(index, None)
        self.plan.save()
        self.backend.submit(self, index, attempt)
        self.view.update()

    def _took(self, index: int) -> str:
        if index in self.started_at and index in self.ended_at:
            return f" in {self.ended_at[index] - self.started_at[index]:.1f}s"
        return ""

    def _adopt(self, entry: PlanEntry) -> bool:
        """Settle an unfinished entry's old run folder before (re)starting it: keep it to resume, take its
        result (it finished, but the plan never heard: True), or remove it."""
        path = self.plan.run_path(entry)
        if path is None or not path.is_dir():
            entry.run_dir = None
            return False
        self.plan.set_run_dir(entry, path)  # relative from now on, also in plans of 0.1.0
        if (path / CHECKPOINT).is_file():
            return False  # the backend resumes it
        try:
            status = read_record(path).status
        except BenchError:
            status = None
        if status is not None and status.earned:
            entry.status = status
            return True
        self._discard(entry)
        return False

    def _discard(self, entry: PlanEntry) -> None:
        """Remove an entry's unfinished run folder that cannot be resumed (a new attempt starts afresh).

        Only a real folder inside the plan's folder, and only while holding its lock: a folder a live
        process holds is refused (see :meth:`_check_run_folders`), never removed.
        """
        path = self.plan.run_path(entry)
        entry.run_dir = None
        if (path is not None and path.is_dir() and not path.is_symlink()
                and path.resolve().parent == self.plan.folder.resolve()):
            with folder_lock(path, "removing an unfinished run folder to start it afresh"):
                shutil.rmtree(path, ignore_errors=True)


#: Rows of the live table beyond the running and failed ones.
MORE_ROWS = 6
_STYLES = {"running": "bold", "failed": "red", "interrupted": "yellow", "diverged": "yellow"}


class PlanView:
    """Progress of a plan: rules above each local run's own progress bar, or event lines and a live table."""

    def __init__(self, driver: Driver):
        self.driver = driver
        self._live: Any = None

    def __enter__(self) -> PlanView:
        if self.driver.backend.live and console.err.is_terminal:
            from rich.live import Live

            self._live = Live(self._table(), console=console.err, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(*exc)
            self._live = None

    def summary(self) -> str:
        return ", ".join(f"{n} {k}" for k, n in self.driver.counts().items() if n or k != "interrupted")

    def update(self) -> None:
        if self._live is not None:
            self._live.update(self._table())

    def started(self, text: str, index: int) -> None:
        """Entry ``index`` began training: a rule above its own progress bar when it trains here, else an event."""
        if self.driver.backend.live:
            self.event(f"started {text}", index)
        else:
            console.err.rule(f"[{index + 1}/{len(self.driver.entries)}] {text}", style="dim")

    def event(self, text: str, index: int) -> None:
        """Report one change; on a terminal with a live table the table shows it too."""
        console.err.print(f"{text}  [{self.summary()}]", soft_wrap=True, markup=False, highlight=False)
        self.update()

    def _table(self) -> Any:
        driver = self.driver
        entries = list(enumerate(driver.entries))
        shown = [i for i, e in entries if e.status.value in ("running", "failed", "interrupted")]
        done = [i for i in sorted(driver.ended_at, key=driver.ended_at.get) if i not in shown][-MORE_ROWS // 2:]
        waiting = [i for i, e in entries if e.status.waiting][: MORE_ROWS - len(done)]
        now = time.monotonic()
        rows = []
        for i in sorted(set(shown + done + waiting)):
            e = driver.entries[i]
            since = driver.started_at.get(i)
            took = "-" if since is None else f"{driver.ended_at.get(i, now) - since:.0f}s"
            rows.append(((str(i + 1), e.describe(), e.status.value, str(driver.attempt.get(i, "-")), took,
                          driver.nodes.get(i, "-")), _STYLES.get(e.status.value)))
        return tables.plan_table(f"{driver.plan.kind} {driver.plan.folder.name}: {self.summary()}", rows,
                                 hidden=len(entries) - len(rows))
