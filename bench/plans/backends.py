"""Where a plan's runs train: here one after another, or as one Ray task each.

Every run goes through :func:`bench.plans.execute.execute`, so it writes exactly what
``bench run`` writes. No torch at the top of this module: Ray imports it in the small actor
that reports when tasks start, and in every worker (which imports the runner only when a
task begins).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import console
from bench.config import PlanSettings
from bench.errors import UsageError
from bench.layout import CHECKPOINT, RUN_JSON, Status
from bench.plans.driver import Driver
from bench.plans.plan import Outcome, PlanEntry
from bench.stop import StopRequest
from bench.storage import make_run_dir, make_unique_dir, write_bytes

INSTALL_HINT = 'pip install "gan-bench[ray]" (from a checkout: pip install -e ".[ray]")'
#: How long an interrupted Ray plan waits for its running tasks to checkpoint.
STOP_GRACE_S = 120.0


def error_text(exc: BaseException) -> str:
    """``Type: last line of the message``: what a plan records of an unexpected error."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


class LocalBackend:
    """Runs the planned entries one after another in this process, sharing its evaluators."""

    live = False

    def __init__(self) -> None:
        self.queue: deque[tuple[int, int]] = deque()
        self.evaluators: Any = None
        #: Why the runs train one at a time, where that was measured (recorded in each run.json).
        self.note: str | None = None

    def describe(self) -> str:
        return f"here, {self.note}" if self.note else "here, one run at a time"

    def settings(self, driver: Driver) -> PlanSettings:
        """The plan's settings as its runs take them here: with the reason they train as they do."""
        return dataclasses.replace(driver.plan.settings, parallelism=self.note) if self.note else driver.plan.settings

    def check(self, settings: PlanSettings) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.evaluators = None

    def submit(self, driver: Driver, index: int, attempt: int) -> None:
        self.queue.append((index, attempt))

    def run(self, driver: Driver) -> None:
        from bench.plans.execute import Evaluators  # torch: only once runs train here

        if self.evaluators is None:
            self.evaluators = Evaluators(driver.plan.settings)  # for the whole plan
        while self.queue and not driver.stop.requested:
            self._run_one(driver, *self.queue.popleft())

    def _run_one(self, driver: Driver, index: int, attempt: int) -> None:
        from bench.plans.execute import execute

        def started(run_dir: Path) -> None:
            driver.started(index, attempt, str(run_dir), None)

        try:
            outcome = execute(self.settings(driver), driver.task_entry(index), driver.plan.folder, self.evaluators,
                              driver.stop, started)
        except Exception as exc:  # anything else a run raises fails that run, not the plan
            outcome = Outcome.failed(error_text(exc), driver.run_dir(index))
        driver.finished(index, attempt, outcome)


#: The outcome of a seed its stack resumed without (its checkpoint or folder was damaged or missing).
LEFT_OUT = "its stack resumed without it (its checkpoint or run folder was damaged or missing)"
#: Seeds per stack unless ``--stack-size`` says otherwise: enough to fill a GPU at the study's batch 64.
DEFAULT_STACK_SIZE = 16


class StackBackend(LocalBackend):
    """Runs the planned entries here, the seeds of each architecture and hyperparameter point as
    stacks of up to ``size`` (``--stack``); an architecture that cannot be stacked runs its seeds
    one after another, with one line saying why.
    """

    def __init__(self, size: int | None = None) -> None:
        super().__init__()
        self.size = size or DEFAULT_STACK_SIZE
        self.refused: dict[str, str] = {}  # architecture -> why it cannot be stacked

    def describe(self) -> str:
        return f"here, the seeds of each architecture as stacks of up to {self.size}"

    def run(self, driver: Driver) -> None:
        from bench.plans.execute import Evaluators  # torch: only once runs train here

        if self.evaluators is None:
            self.evaluators = Evaluators(driver.plan.settings)
        while self.queue and not driver.stop.requested:
            group = take_group(driver, self.queue, self.size)
            if len(group) == 1 or driver.entries[group[0][0]].arch in self.refused:
                for index, attempt in group:
                    self._run_one(driver, index, attempt)
            else:
                self._run_stack(driver, group)

    def _run_stack(self, driver: Driver, group: list[tuple[int, int]]) -> None:
        """Train ``group`` (entry index, attempt) as one stack; if the architecture cannot be stacked,
        say why once and queue its runs again to train one at a time."""
        from bench.plans.execute import execute_stack

        attempts = dict(group)
        by_seed = {driver.entries[i].seed: i for i, _ in group}

        def started(seed: int, run_dir: Path) -> None:
            driver.started(by_seed[seed], attempts[by_seed[seed]], str(run_dir), None)

        try:
            outcomes = execute_stack(driver.plan.settings, [driver.task_entry(i) for i, _ in group],
                                     driver.plan.folder, self.evaluators, driver.stop, started)
        except Exception as exc:  # anything else fails the stack's runs, not the plan
            outcomes = {seed: Outcome.failed(error_text(exc), driver.run_dir(i)) for seed, i in by_seed.items()}
        if isinstance(outcomes, Exception):
            self.refused[driver.entries[group[0][0]].arch] = str(outcomes)
            console.warn(f"{outcomes}; its seeds train one after another")
            for index, _ in group:  # as if never started: a refused first step leaves no folder behind
                driver.entries[index].status = Status.QUEUED
                driver.plan.set_run_dir(driver.entries[index], None)
            self.queue.extendleft(reversed(group))
            return
        for seed, index in by_seed.items():
            outcome = outcomes.get(seed) or Outcome.failed(LEFT_OUT, driver.run_dir(index))
            driver.finished(index, attempts[index], outcome)


def take_group(driver: Driver, queue: deque[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Take the next queued entry, and those that train in one stack with it, off ``queue``: the rest of its stack
    when it resumes one, else up to ``size`` new runs of its architecture and hyperparameter point."""
    first, attempt = queue.popleft()
    entry = driver.entries[first]
    members = _stack_folders(driver.plan.run_path(entry))
    if members is None:  # a run that trained alone resumes alone
        return [(first, attempt)]
    group = [(first, attempt)]
    for index, a in list(queue):
        other = driver.entries[index]
        path = driver.plan.run_path(other)
        if members:
            joins = path is not None and path.resolve() in members
        else:
            joins = (len(group) < size and other.arch == entry.arch and other.hparams == entry.hparams
                     and _stack_folders(path) == set())
        if joins:
            queue.remove((index, a))
            group.append((index, a))
    return group


def _stack_folders(run_dir: Path | None) -> set[Path] | None:
    """For an entry's run folder: empty if it starts afresh, the stack's folders if it resumes a stack,
    None if it resumes a run that trained alone."""
    from bench.record import read_record

    if run_dir is None or not (run_dir / CHECKPOINT).is_file():
        return set()
    try:
        stack = read_record(run_dir).stack
    except UsageError:
        return None  # a damaged record: the run's own resume says what is wrong
    if stack is None:
        return None
    return {(run_dir.parent / rel).resolve() for rel in stack.runs}


# Several processes at once ---------------------------------------------------------------------


#: A plan folder's subfolder for the output of runs trained in processes of their own.
LOGS = "logs"
#: How long a stopped plan waits for its runs' processes to checkpoint and exit before ending them.
PROCESS_GRACE_S = 120.0


def run_in_process(settings: PlanSettings, entry: PlanEntry, folder: str, shared_stop: Any, log: str,
                   results: Any) -> None:
    """One planned run in a process of its own: its output into ``log``, its outcome back through ``results``.

    If the plan's process dies (SIGKILL, the out-of-memory killer), the run notices within a second,
    checkpoints after its batch and ends as interrupted, for ``--resume`` to continue.
    """
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from bench.plans.execute import Evaluators, execute  # torch: in the run's own process
    from bench.stop import SharedStopRequest

    stop = SharedStopRequest(shared_stop)
    _stop_when_orphaned(stop)
    try:
        outcome = execute(settings, entry, Path(folder), Evaluators(settings), stop)
    except BaseException as exc:  # Ctrl-C twice, or anything else: the parent must hear of it
        interrupted = isinstance(exc, KeyboardInterrupt)
        outcome = Outcome(Status.INTERRUPTED if interrupted else Status.FAILED, entry.run_dir, error_text(exc))
    with contextlib.suppress(OSError):  # the parent has gone: the run folder already says how it ended
        results.send(outcome)
        results.close()


def _stop_when_orphaned(stop: StopRequest) -> None:
    """Request ``stop`` as soon as this process's parent dies (a watcher thread on the parent's sentinel)."""
    import multiprocessing
    import signal
    import threading
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        print(f"the plan's process {parent.pid} has gone: checkpointing after this batch and stopping; continue "
              "with --resume on the plan folder", file=sys.stderr, flush=True)
        stop.request(signal.SIGHUP)

    threading.Thread(target=watch, name="gan-bench parent watcher", daemon=True).start()


@dataclass
class _Running:
    process: Any
    results: Any
    attempt: int


class ProcessBackend:
    """Runs ``jobs`` planned entries at once, each in a process of its own with ``threads`` torch threads.

    The runs' own output goes to ``logs/<run folder>.log`` in the plan folder; this process shows
    the plan's table. A stop (Ctrl-C, SIGTERM) reaches every run, which checkpoints and ends.
    """

    live = True  # the runs train in other processes and print nothing here

    def __init__(self, jobs: int, threads: int, note: str | None = None):
        self.jobs, self.threads = jobs, threads
        self.note = note  # why this many at once, where that was measured (recorded in each run.json)
        self.queue: deque[tuple[int, int]] = deque()
        self.running: dict[int, _Running] = {}
        self._context: Any = None
        self._stop: Any = None

    def describe(self) -> str:
        if self.note:
            return f"here, in processes of their own, {self.note}"
        return f"here, {self.jobs} runs at a time in processes of their own, {self.threads} torch thread(s) each"

    def check(self, settings: PlanSettings) -> None:
        pass

    def start(self) -> None:
        import multiprocessing

        # spawn, not fork: a forked child would inherit torch's thread pools in an undefined state.
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Value("i", 0)

    def stop(self) -> None:
        pass

    def submit(self, driver: Driver, index: int, attempt: int) -> None:
        self.queue.append((index, attempt))

    def run(self, driver: Driver) -> None:
        try:
            while self.queue or self.running:
                if driver.stop.requested:
                    self._stop.value = driver.stop.signal
                while self.queue and len(self.running) < self.jobs and not driver.stop.requested:
                    self._launch(driver, *self.queue.popleft())
                self._collect(driver, timeout=0.5)
                if driver.stop.requested and not self.running:
                    return
        except KeyboardInterrupt:
            driver.stop.request()
            self._stop.value = driver.stop.signal
            deadline = time.monotonic() + PROCESS_GRACE_S
            with contextlib.suppress(KeyboardInterrupt):
                while self.running and time.monotonic() < deadline:
                    self._collect(driver, timeout=0.5)
            self._end_the_rest(driver)

    def _launch(self, driver: Driver, index: int, attempt: int) -> None:
        entry = driver.task_entry(index)
        if entry.run_dir is None:  # named here, so the plan knows where it trains from the start
            entry.run_dir = str(make_run_dir(driver.plan.folder, entry.arch, entry.seed).resolve())
        logs = driver.plan.folder / LOGS
        logs.mkdir(exist_ok=True)
        settings = dataclasses.replace(driver.plan.settings, threads=driver.plan.settings.threads or self.threads,
                                       parallel_runs=self.jobs, parallelism=self.note)
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=run_in_process, name=f"gan-bench {entry.describe()}",
            args=(settings, entry, str(driver.plan.folder.resolve()), self._stop,
                  str(logs / f"{Path(entry.run_dir).name}.log"), send))
        process.start()
        send.close()  # the child holds its end; EOF then means it has gone
        self.running[index] = _Running(process, receive, attempt)
        driver.started(index, attempt, entry.run_dir, f"process {process.pid}")

    def _collect(self, driver: Driver, timeout: float) -> None:
        """Take the outcomes of the runs that have ended within ``timeout`` seconds."""
        from multiprocessing.connection import wait

        ready = wait([r.results for r in self.running.values()], timeout=timeout)
        for index, running in list(self.running.items()):
            if running.results not in ready:
                continue
            try:
                outcome = running.results.recv()
            except (EOFError, OSError):  # the process died without a word (killed, out of memory)
                running.process.join()
                outcome = _died(running.process.exitcode, driver.run_dir(index))
            running.process.join()
            del self.running[index]
            driver.finished(index, running.attempt, outcome)

    def _end_the_rest(self, driver: Driver) -> None:
        for index, running in list(self.running.items()):
            running.process.terminate()
            running.process.join()
            del self.running[index]
            driver.finished(index, running.attempt, Outcome(Status.INTERRUPTED, driver.run_dir(index), "stopped"))


def _died(exitcode: int | None, run_dir: str | None) -> Outcome:
    """The outcome of a run whose process ended without sending one: interrupted, so ``--resume`` continues it
    from its checkpoint (or starts it again), and its run.json says so too."""
    import signal

    from bench.runfolder import mark_ended

    killed = exitcode is not None and exitcode < 0
    name = signal.Signals(-exitcode).name if killed else None
    error = (f"its process was killed by {name}" if killed
             else f"its process ended with exit code {exitcode} without a result")
    if run_dir is not None and Path(run_dir).is_dir():
        with contextlib.suppress(UsageError, OSError):
            mark_ended(run_dir, Status.INTERRUPTED, error, name)
    return Outcome(Status.INTERRUPTED, run_dir, error)


def local_backend(settings: PlanSettings, jobs: int | None, runs: int, archs: list[str] | None = None
                  ) -> LocalBackend | ProcessBackend:
    """Where a plan's runs train on this machine: ``jobs`` at once, stacked, or by default what measures
    faster here.

    The default: on a GPU, the seeds of each architecture stacked (``settings.stack`` None) where
    it can be, else one at a time; on the CPU, given ``archs`` and no ``--threads``, one after another
    with every free CPU's thread or side by side with one thread each, whichever
    :mod:`bench.plans.parallelism` measures faster for this plan; with ``--threads``, one run per
    share of the free CPUs.
    """
    from bench.machine import free_cpus

    stack = settings.stack
    if stack or (stack is None and jobs is None and _on_cuda(settings)):
        return StackBackend(settings.stack_size)
    free = None
    if jobs is None:
        free, _ = free_cpus()
        if _on_cuda(settings):
            jobs = 1
        elif archs and not settings.threads:
            from bench.plans.parallelism import choose  # torch: only where runs train here

            choice = choose(settings, archs, runs, free)
            if choice.jobs <= 1:
                backend = LocalBackend()
                backend.note = choice.why
                return backend
            return ProcessBackend(choice.jobs, choice.threads, choice.why)
        else:
            jobs = max(1, min(runs, free // (settings.threads or 1)))
    if jobs <= 1:
        return LocalBackend()
    if free is None:
        free, _ = free_cpus()
    return ProcessBackend(jobs, settings.threads or max(1, free // jobs))


def _on_cuda(settings: PlanSettings) -> bool:
    device = settings.device
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return device.startswith("cuda")


# Ray ------------------------------------------------------------------------------------------


def import_ray() -> Any:
    """Import Ray, or fail with one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--backend ray needs Ray, which is not installed here; install it with: {INSTALL_HINT}") \
            from None
    return ray


def unreachable(address: str) -> str | None:
    """Why ``HOST:PORT`` takes no TCP connection within a few seconds, or None (also for other address forms)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or "://" in address:
        return None  # "auto", "ray://...": Ray's own messages are clear enough
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


class Tracker:
    """A Ray actor the tasks tell when they start, so the driver knows what is running where."""

    def __init__(self) -> None:
        self.events: list[tuple[int, int, str | None, str]] = []

    def started(self, index: int, attempt: int, run_dir: str | None, node: str) -> None:
        self.events.append((index, attempt, run_dir, node))

    def drain(self) -> list[tuple[int, int, str | None, str]]:
        events, self.events = self.events, []
        return events


def read_tree(folder: str | os.PathLike) -> dict[str, bytes]:
    """Every file under ``folder`` as ``{relative path: bytes}``."""
    root = Path(folder)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_tree(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` under ``folder`` atomically, one by one, and remove files not among them."""
    for rel, data in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(target, data)
    for path in list(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.relative_to(folder).as_posix() not in files:
            path.unlink()  # e.g. the checkpoint of a run that has now completed


_EVALUATORS: dict[str, Any] = {}


def worker_evaluators(settings: PlanSettings) -> Any:
    """This worker process's evaluators for ``settings``, made once and reused across its tasks."""
    from bench.plans.execute import Evaluators

    key = json.dumps([getattr(settings, k) for k in Evaluators.SETTINGS])
    if key not in _EVALUATORS:
        _EVALUATORS[key] = Evaluators(settings)
    return _EVALUATORS[key]


def run_task(settings: PlanSettings, entry: PlanEntry, folder: str, shared: bool, tracker: Any,
             index: int, attempt: int, upload: tuple[str, dict[str, bytes]] | None) -> Outcome:
    """One Ray task: run one planned entry and return its outcome.

    With ``shared`` the run folder is written under ``folder``, a path every node sees;
    otherwise it is written to a temporary folder and returned as the outcome's ``files``
    for the driver to write. ``upload`` is ``(folder name, files)`` of an interrupted run to
    resume when the nodes share no disk.
    """
    from bench.plans.execute import execute

    seen: dict[str, str] = {}

    def started(run_dir: Path) -> None:
        seen["run_dir"] = str(run_dir)
        if tracker is not None:
            tracker.started.remote(index, attempt, str(run_dir) if shared else None, socket.gethostname())

    try:
        evaluators = worker_evaluators(settings)
    except Exception as exc:
        return Outcome.failed(error_text(exc))
    stop = StopRequest()  # ray.cancel sends SIGINT: the run checkpoints at its next batch
    if shared:
        try:
            return execute(settings, entry, Path(folder), evaluators, stop, started)
        except Exception as exc:
            return Outcome.failed(error_text(exc), seen.get("run_dir"))
    with tempfile.TemporaryDirectory(prefix="gan-bench-plan-") as tmp:
        entry = dataclasses.replace(entry, run_dir=None)
        if upload is not None:
            previous = Path(tmp) / upload[0]
            write_tree(previous, upload[1])
            entry.run_dir = str(previous)
        try:
            outcome = execute(settings, entry, Path(tmp), evaluators, stop, started)
        except Exception as exc:
            outcome = Outcome.failed(error_text(exc), seen.get("run_dir"))
        if outcome.run_dir and Path(outcome.run_dir).is_dir():
            outcome.files = read_tree(outcome.run_dir)
        return outcome


def run_stack_task(settings: PlanSettings, entries: list[PlanEntry], folder: str, tracker: Any,
                   indices: list[int], attempts: list[int]) -> dict[int, Outcome] | str:
    """One Ray task: train ``entries`` (one architecture and hyperparameter point, distinct seeds) as one stack of
    seeds on this task's device, in run folders under ``folder`` (storage every node shares).

    Returns:
        each entry's outcome by its index in the plan, or why the architecture cannot be stacked (nothing was
        written: its runs are then submitted one by one).
    """
    from bench.plans.execute import execute_stack

    by_seed = {e.seed: (i, a) for e, i, a in zip(entries, indices, attempts, strict=True)}

    def started(seed: int, run_dir: Path) -> None:
        if tracker is not None:
            tracker.started.remote(*by_seed[seed], str(run_dir), socket.gethostname())

    try:
        outcomes = execute_stack(settings, entries, Path(folder), worker_evaluators(settings), StopRequest(),
                                 started)
    except Exception as exc:
        return {i: Outcome.failed(error_text(exc), e.run_dir) for e, i in zip(entries, indices, strict=True)}
    if isinstance(outcomes, Exception):
        return str(outcomes)
    return {by_seed[seed][0]: outcome for seed, outcome in outcomes.items()}


class RayBackend:
    """Runs each planned entry as one Ray task, as many at once as the cluster's resources allow; with
    ``stack_size``, the seeds of each architecture and point as one task that trains them as a stack.

    Args:
        address: the cluster to join (``ray.init(address=...)``); None starts Ray on this machine.
        cpus, gpus: what each task declares (``num_cpus``, ``num_gpus``).
        shared: whether every node sees the plan folder; if not, the runs' files travel back.
        stack_size: stack up to this many seeds per task (``--stack``; storage must be shared).
    """

    live = True  # the runs train elsewhere and print nothing here

    def __init__(self, address: str | None = None, cpus: int = 1, gpus: float = 0, shared: bool = True,
                 stack_size: int | None = None):
        self.ray = import_ray()
        self.address, self.cpus, self.gpus, self.shared = address, cpus, gpus, shared
        self.stack_size = stack_size
        #: Each task's entries as (index, attempt): one, or a stack's.
        self.inflight: dict[Any, list[tuple[int, int]]] = {}
        self.pending: deque[tuple[int, int]] = deque()  # entries waiting to be grouped into stacks
        self.refused: dict[str, str] = {}  # architecture -> why it cannot be stacked
        self.stack_refs: set[Any] = set()  # the in-flight tasks that train stacks
        self._remote: Any = None
        self._remote_stack: Any = None
        self._tracker: Any = None
        self._owns = False

    def describe(self) -> str:
        where = self.address or "a Ray instance on this machine"
        storage = "shared storage" if self.shared else "files returned to the driver"
        unit = f"stack of up to {self.stack_size} seeds" if self.stack_size else "run"
        return f"on {where}, {self.cpus} CPU and {self.gpus:g} GPU per {unit}, {storage}"

    def task_settings(self, settings: PlanSettings) -> PlanSettings:
        """The settings a task runs with: torch threads = its CPUs; the CPU unless it holds a GPU."""
        device = settings.device
        if not self.gpus and device == "auto":
            device = "cpu"
        data_dir = settings.data_dir
        return dataclasses.replace(settings, threads=settings.threads or self.cpus, device=device,
                                   data_dir=str(Path(data_dir).resolve()) if data_dir else None)

    def check(self, settings: PlanSettings) -> None:
        """Refuse settings a Ray task cannot honour."""
        device = settings.device
        if not self.gpus and (device == "cuda" or device.startswith("cuda:")):
            raise UsageError(f"--device {device} with --backend ray needs --gpus-per-run (e.g. 1), "
                             "so Ray gives each run a GPU")

    def start(self) -> None:
        """Start Ray here, or join the cluster at ``address`` (nothing to do if Ray is already up)."""
        ray = self.ray
        if not ray.is_initialized():
            problem = unreachable(self.address) if self.address else None
            if problem:
                raise UsageError(f"cannot reach a Ray cluster at --address {self.address} ({problem}); "
                                 "start one there with: ray start --head")
            options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
            if self.address:
                options["address"] = self.address
            else:  # a fresh instance, not whatever `ray start` left registered on this machine
                options.update(address="local", include_dashboard=False)
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UsageError(f"cannot start or join Ray{' at ' + self.address if self.address else ''}: "
                                 f"{error_text(exc)}") from None
            self._owns = True
        self._remote = ray.remote(run_task).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        self._remote_stack = ray.remote(run_stack_task).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        self._tracker = ray.remote(Tracker).options(num_cpus=0).remote()

    def stop(self) -> None:
        if self._tracker is not None:
            self.ray.kill(self._tracker)
            self._tracker = None
        if self._owns:
            self.ray.shutdown()
            self._owns = False

    def submit(self, driver: Driver, index: int, attempt: int) -> None:
        if self.stack_size and driver.entries[index].arch not in self.refused:
            self.pending.append((index, attempt))  # grouped into stacks when the backend runs
            return
        self._submit_one(driver, index, attempt)

    def _submit_stacks(self, driver: Driver) -> None:
        """Submit the pending entries as stacks (one task each), alone where a group holds one."""
        while self.pending:
            group = take_group(driver, self.pending, self.stack_size)
            if len(group) == 1 or driver.entries[group[0][0]].arch in self.refused:
                for index, attempt in group:
                    self._submit_one(driver, index, attempt)
                continue
            indices, attempts = [i for i, _ in group], [a for _, a in group]
            ref = self._remote_stack.remote(self.task_settings(driver.plan.settings),
                                            [driver.task_entry(i) for i in indices], str(driver.plan.folder.resolve()),
                                            self._tracker, indices, attempts)
            self.inflight[ref] = group
            self.stack_refs.add(ref)

    def _submit_one(self, driver: Driver, index: int, attempt: int) -> None:
        entry = driver.task_entry(index)
        upload = None
        if not self.shared and entry.run_dir and Path(entry.run_dir).is_dir():
            # An interrupted run with its checkpoint: the node resumes it from a copy.
            upload = (Path(entry.run_dir).name, read_tree(entry.run_dir))
        # Absolute paths: a worker's working folder is not this process's.
        ref = self._remote.remote(self.task_settings(driver.plan.settings), entry, str(driver.plan.folder.resolve()),
                                  self.shared, self._tracker, index, attempt, upload)
        self.inflight[ref] = [(index, attempt)]

    def run(self, driver: Driver) -> None:
        try:
            self._collect(driver, until_stop=True)
            if not self.inflight:
                return
            console.warn(f"interrupted: the {len(self.inflight)} unfinished task(s) checkpoint and stop "
                         "after their batch (Ctrl-C again to stop at once)")
            for ref in list(self.inflight):
                self.ray.cancel(ref)  # SIGINT in the worker: the runner checkpoints at the batch boundary
            self._collect(driver, until_stop=False, deadline=time.monotonic() + STOP_GRACE_S)
        except KeyboardInterrupt:
            driver.stop.request()
        for ref in list(self.inflight):
            self.ray.cancel(ref, force=True)
            for index, attempt in self.inflight.pop(ref):
                driver.finished(index, attempt, Outcome(Status.INTERRUPTED, driver.run_dir(index), "stopped"))

    def _collect(self, driver: Driver, until_stop: bool, deadline: float | None = None) -> None:
        """Take outcomes as tasks end: until all have, or a stop is requested, or the deadline passes."""
        ray = self.ray
        if until_stop:
            self._submit_stacks(driver)
        while self.inflight and not (until_stop and driver.stop.requested) and (
                deadline is None or time.monotonic() < deadline):
            done, _ = ray.wait(list(self.inflight), num_returns=1, timeout=0.5)
            for index, attempt, run_dir, node in ray.get(self._tracker.drain.remote()):
                driver.started(index, attempt, run_dir, node)
            for ref in done:
                group = self.inflight.pop(ref)
                if ref in self.stack_refs:
                    self.stack_refs.discard(ref)
                    self._stack_finished(driver, ref, group)
                else:
                    driver.finished(*group[0], self._outcome(driver, group[0][0], ref))
            if until_stop and not driver.stop.requested:
                self._submit_stacks(driver)  # retries and refused stacks, queued meanwhile

    def _stack_finished(self, driver: Driver, ref: Any, group: list[tuple[int, int]]) -> None:
        """Take a stack task's outcomes, or, if its architecture cannot be stacked, submit its runs one by one."""
        ray = self.ray
        try:
            result = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            result = {i: Outcome(Status.INTERRUPTED if driver.stop.requested else Status.FAILED, driver.run_dir(i),
                                 "cancelled") for i, _ in group}
        except ray.exceptions.RayError as exc:  # the worker or its node died
            result = {i: Outcome.failed(error_text(getattr(exc, "cause", None) or exc), driver.run_dir(i))
                      for i, _ in group}
        if isinstance(result, str):
            self.refused[driver.entries[group[0][0]].arch] = result
            console.warn(f"{result}; its seeds train as one task each")
            for index, attempt in group:
                self._submit_one(driver, index, attempt)
            return
        for index, attempt in group:
            outcome = result.get(index) or Outcome.failed(LEFT_OUT, driver.run_dir(index))
            outcome.run_dir = outcome.run_dir or driver.run_dir(index)
            driver.finished(index, attempt, outcome)

    def _outcome(self, driver: Driver, index: int, ref: Any) -> Outcome:
        ray = self.ray
        try:
            outcome = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            outcome = Outcome(Status.INTERRUPTED if driver.stop.requested else Status.FAILED, error="cancelled")
        except ray.exceptions.RayError as exc:  # the worker or its node died
            outcome = Outcome.failed(error_text(getattr(exc, "cause", None) or exc))
        if outcome.files is not None:
            outcome.run_dir = str(self._write_back(driver, index, outcome))
        elif not self.shared:
            outcome.run_dir = None  # a node's temporary folder, gone
        else:
            outcome.run_dir = outcome.run_dir or driver.run_dir(index)
        return outcome

    def _write_back(self, driver: Driver, index: int, outcome: Outcome) -> Path:
        """Write a run folder that came back from a node without shared storage, as ``bench run`` would."""
        files, outcome.files = outcome.files or {}, None
        name = Path(outcome.run_dir or f"{driver.entries[index].arch}-run").name
        previous = driver.plan.run_path(driver.entries[index])
        folder = previous if previous is not None and previous.is_dir() else make_unique_dir(driver.plan.folder, name)
        if RUN_JSON in files:  # the record names the node's temporary folder; name this one
            record = json.loads(files[RUN_JSON])
            record.get("config", {})["out"] = str(driver.plan.folder)
            files[RUN_JSON] = (json.dumps(record, indent=2) + "\n").encode()
        write_tree(folder, files)
        return folder
