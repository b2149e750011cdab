"""``bench sweep``: every (architecture, seed, hyperparameter point), here or on a Ray cluster.

A sweep is a comparison whose plan gives each entry its own hyperparameters: the folder,
its ``compare.json`` and ``--resume`` are those of ``bench compare``, and every run goes
through :func:`bench.compare.execute`, so it writes exactly what ``bench run`` writes.
``--backend local`` runs the points one after another in this process; ``--backend ray``
runs each as one Ray task that declares its CPUs and GPUs, so a cluster places one run
per GPU. A run that fails is retried (once by default), then recorded as failed with its
error while the others go on.

This module imports no torch at the top: Ray imports it in every worker and in the small
actor that reports when tasks start.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import signal
import socket
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterator

from bench import console
from bench.compare import adopt, discard, failed_outcome as _failed
from bench.errors import BenchError, UsageError

INSTALL_HINT = 'pip install -e ".[ray]" (or: pip install "ray>=2.9")'
#: Statuses of a planned run that is waiting for its turn.
WAITING = ("pending", "queued")
#: How long an interrupted Ray sweep waits for its running tasks to checkpoint.
STOP_GRACE_S = 120.0
_OPEN, _CLOSE = "([", ")]"


# The grid -----------------------------------------------------------------------------------


def split_values(text: str) -> list[str]:
    """Split ``a,b,c`` on the commas outside brackets, so ``(0.5,0.9),(0.0,0.9)`` is two values."""
    values, depth, current = [], 0, ""
    for char in text:
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return values


def parse_grid_option(text: str) -> tuple[str, list[str]]:
    """``KEY=V1,V2,...`` into ``(key, [values])`` (argparse type of ``--grid``)."""
    key, sep, rest = text.partition("=")
    values = split_values(rest)
    if not sep or not key.strip() or not all(values):
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE[,VALUE...], e.g. lr=1e-4,2e-4")
    return key.strip(), values


@dataclasses.dataclass
class Grid:
    """Values per hyperparameter for every architecture, and per architecture on top of them."""

    common: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    per_arch: dict[str, dict[str, list[Any]]] = dataclasses.field(default_factory=dict)
    file: str | None = None

    def for_arch(self, arch: str) -> dict[str, list[Any]]:
        """The grid of ``arch``: its own table's keys replace the common ones."""
        return {**self.common, **self.per_arch.get(arch, {})}


def read_grid_file(path: str) -> Grid:
    """Read a TOML grid file: a ``[grid]`` table of ``key = [values]``, and ``[grid.ARCH]`` tables."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise UsageError("--grid-file needs Python 3.11 or newer, or: pip install tomli") from None
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise UsageError(f"--grid-file {path}: cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--grid-file {path}: invalid TOML ({exc})") from None
    table = data.get("grid")
    if not isinstance(table, dict) or not table:
        raise UsageError(f"--grid-file {path}: no [grid] table; write e.g. [grid] then lr = [1e-4, 2e-4]")
    grid = Grid(file=path)
    for key, value in table.items():
        if isinstance(value, dict):
            grid.per_arch[key] = {k: _values(path, f"grid.{key}.{k}", v) for k, v in value.items()}
        else:
            grid.common[key] = _values(path, f"grid.{key}", value)
    return grid


def _values(path: str, where: str, value: Any) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, dict) for v in values):
        raise UsageError(f"--grid-file {path}: {where} must be a value or a non-empty list of values")
    return values


def make_grid(options: list[tuple[str, list[str]]], grid_file: str | None) -> Grid:
    """The grid of ``--grid-file`` with the ``--grid`` options on top (they win on a shared key)."""
    grid = read_grid_file(grid_file) if grid_file else Grid()
    seen: set[str] = set()
    for key, values in options:
        if key in seen:
            raise UsageError(f"--grid {key}=... given twice; put all its values in one option: --grid {key}=A,B")
        seen.add(key)
        grid.common[key] = values
    return grid


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def grid_points(arch: str, spec: Any, grid: Grid, fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """Every point of ``arch``'s grid (the cartesian product), each value converted to its field's type.

    Raises:
        UsageError: a key the architecture does not have, a value that does not convert, or
            a point given twice.
    """
    keys = sorted(f.name for f in dataclasses.fields(spec.config))
    table = grid.for_arch(arch)
    for key in table:
        if key not in keys:
            where = f"[grid.{arch}] in {grid.file}" if key in grid.per_arch.get(arch, {}) else "--grid"
            raise UsageError(f"{where} key {key!r} is not a hyperparameter of {arch}; {arch} has: {', '.join(keys)}")
        if key in fixed:
            raise UsageError(f"{key!r} is given both by --set and by the grid; keep one")
    points = []
    for values in itertools.product(*table.values()):
        point = dict(zip(table, values))
        try:
            cfg = spec.make_config({**fixed, **point})
        except UsageError as exc:
            raise UsageError(f"{arch}: {exc}") from None
        typed = {k: _jsonable(getattr(cfg, k)) for k in point}
        if typed in points:
            raise UsageError(f"{arch}: the grid gives the point {_point_text(typed)} twice")
        points.append(typed)
    return points


def _point_text(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items()) or "(defaults)"


# The plan -----------------------------------------------------------------------------------


def create_sweep(out: str, archs: list[str], seeds: list[int], grid: Grid, points: dict[str, list[dict[str, Any]]],
                 settings: dict[str, Any]) -> Any:
    """Create the sweep folder and its plan: one entry per (architecture, point, seed)."""
    from bench.compare import Comparison

    return Comparison.create(out, archs, seeds, settings, points=points, prefix="sweep", kind="sweep",
                             grid={"common": grid.common, "per_arch": grid.per_arch, "file": grid.file})


def command_line(plan: dict[str, Any]) -> str:
    """The ``bench sweep`` command that makes ``plan``'s runs (non-default settings only)."""
    from bench.compare import command_line as compare_command

    text = compare_command(plan).replace("python -m bench compare", "python -m bench sweep", 1)
    grid = plan.get("grid") or {}
    if grid.get("file"):
        text += f" --grid-file {grid['file']}"
    for key, values in (grid.get("common") or {}).items():
        text += f" --grid {key}={','.join(str(v) for v in values)}"
    return text


# The backends -------------------------------------------------------------------------------


def import_ray() -> Any:
    """Import Ray, or fail with one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--backend ray needs Ray, which is not installed here; install it with: {INSTALL_HINT}") \
            from None
    return ray


def _error_text(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


class LocalBackend:
    """Runs the planned entries one after another in this process, sharing one evaluator."""

    name = "local"
    #: Whether the sweep's live table may take the terminal: no, each run shows its own progress bar.
    live = False

    def __init__(self) -> None:
        self.queue: deque[tuple[int, int]] = deque()
        self.evaluator: Any = None

    def describe(self) -> str:
        return "here, one run at a time"

    def check(self, settings: dict[str, Any]) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.evaluator = None

    def submit(self, driver: "SweepDriver", index: int, attempt: int) -> None:
        self.queue.append((index, attempt))

    def run(self, driver: "SweepDriver") -> None:
        from bench.compare import execute, make_evaluator

        if self.evaluator is None:
            self.evaluator = make_evaluator(driver.settings)  # one for the sweep, as bench compare does
        while self.queue and driver.stopping is None:
            index, attempt = self.queue.popleft()
            entry = driver.entries[index]
            started = lambda run_dir, i=index, a=attempt: driver.started(i, a, str(run_dir), None)  # noqa: E731
            try:
                outcome = execute(driver.settings, entry, driver.folder, self.evaluator, started)
            except Exception as exc:  # anything else a run raises fails that run, not the sweep
                outcome = _failed(_error_text(exc), driver.running_dir(index))
            if outcome.get("stop_signal"):  # Ctrl-C or SIGTERM here: the run checkpointed; stop the sweep
                driver.stop(outcome["stop_signal"])
            driver.finished(index, attempt, outcome)


@contextlib.contextmanager
def _signals_interrupt(driver: "SweepDriver") -> Iterator[None]:
    """Make SIGTERM stop the driver as Ctrl-C does (a KeyboardInterrupt), remembering which signal came."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        driver.stop(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _unreachable(address: str) -> str | None:
    """Why ``HOST:PORT`` takes no TCP connection within a few seconds, or None (also for other address forms)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or "://" in address:
        return None  # "auto", "ray://...": Ray's own messages are clear enough
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


class _Tracker:
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
    from bench.results import atomic_path

    for rel, data in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    for path in list(folder.rglob("*")):
        if path.is_file() and path.relative_to(folder).as_posix() not in files:
            path.unlink()  # e.g. the checkpoint of a run that has now completed


_EVALUATORS: dict[str, Any] = {}


def worker_evaluator(settings: dict[str, Any]) -> Any:
    """This worker process's evaluator for ``settings`` (None with --no-eval), built once and reused.

    Built before any run seeds torch, as the local backend builds its one evaluator, so a
    run on Ray draws the same random numbers as the same run here.
    """
    from bench.compare import make_evaluator

    key = json.dumps([settings.get(k) for k in ("eval", "device", "eval_samples", "data_dir")])
    if key not in _EVALUATORS:
        _EVALUATORS[key] = make_evaluator(settings)
    return _EVALUATORS[key]


def run_task(settings: dict[str, Any], entry: dict[str, Any], folder: str, shared: bool, tracker: Any,
             index: int, attempt: int, upload: tuple[str, dict[str, bytes]] | None) -> dict[str, Any]:
    """One Ray task: run one planned entry with :func:`bench.compare.execute` and return its outcome.

    With ``shared`` the run folder is written under ``folder``, a path every node sees;
    otherwise it is written to a temporary folder and returned as ``files``
    (``{relative path: bytes}``) with ``run_name``, for the driver to write. ``upload``
    is ``(folder name, files)`` of an interrupted run to resume when the nodes share no disk.
    """
    from bench.compare import execute

    seen: dict[str, str] = {}

    def started(run_dir: Path) -> None:
        seen["run_dir"] = str(run_dir)
        if tracker is not None:
            tracker.started.remote(index, attempt, str(run_dir) if shared else None, socket.gethostname())

    try:
        evaluator = worker_evaluator(settings)
    except Exception as exc:
        return _failed(_error_text(exc))
    if shared:
        try:
            return execute(settings, entry, Path(folder), evaluator, started)
        except Exception as exc:
            return _failed(_error_text(exc), seen.get("run_dir"))
    with tempfile.TemporaryDirectory(prefix="gan-bench-sweep-") as tmp:
        entry = dict(entry, run_dir=None)
        if upload is not None:
            previous = Path(tmp) / upload[0]
            write_tree(previous, upload[1])
            entry["run_dir"] = str(previous)
        try:
            outcome = execute(settings, entry, Path(tmp), evaluator, started)
        except Exception as exc:
            outcome = _failed(_error_text(exc), seen.get("run_dir"))
        if outcome.get("run_dir") and Path(outcome["run_dir"]).is_dir():
            outcome["files"] = read_tree(outcome["run_dir"])
            outcome["run_name"] = Path(outcome["run_dir"]).name
        return outcome


class RayBackend:
    """Runs each planned entry as one Ray task, as many at once as the cluster's resources allow.

    Args:
        address: the cluster to join (``ray.init(address=...)``); None starts Ray on this machine.
        cpus, gpus: what each task declares (``num_cpus``, ``num_gpus``).
        shared: whether every node sees the sweep folder; if not, the runs' files travel back.
    """

    name = "ray"
    live = True  # the runs train elsewhere and print nothing here

    def __init__(self, address: str | None = None, cpus: int = 1, gpus: float = 0, shared: bool = True):
        self.ray = import_ray()
        self.address, self.cpus, self.gpus, self.shared = address, cpus, gpus, shared
        self.inflight: dict[Any, tuple[int, int]] = {}
        self._remote: Any = None
        self._tracker: Any = None
        self._owns = False

    def describe(self) -> str:
        where = self.address or "a Ray instance on this machine"
        storage = "shared storage" if self.shared else "files returned to the driver"
        return f"on {where}, {self.cpus} CPU and {self.gpus:g} GPU per run, {storage}"

    def task_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The settings a task runs with: torch threads = its CPUs; the CPU unless it holds a GPU."""
        device = settings.get("device", "auto")
        if not self.gpus and device == "auto":
            device = "cpu"
        data_dir = settings.get("data_dir")
        return {**settings, "threads": settings.get("threads") or self.cpus, "device": device,
                "data_dir": str(Path(data_dir).resolve()) if data_dir else None}

    def check(self, settings: dict[str, Any]) -> None:
        """Refuse settings a Ray task cannot honour."""
        device = settings.get("device", "auto")
        if not self.gpus and (device == "cuda" or device.startswith("cuda:")):
            raise UsageError(f"--device {device} with --backend ray needs --gpus-per-run (e.g. 1), "
                             "so Ray gives each run a GPU")

    def start(self) -> None:
        """Start Ray here, or join the cluster at ``address`` (nothing to do if Ray is already up)."""
        import logging

        ray = self.ray
        if not ray.is_initialized():
            problem = _unreachable(self.address) if self.address else None
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
                                 f"{_error_text(exc)}") from None
            self._owns = True
        self._remote = ray.remote(run_task).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        self._tracker = ray.remote(_Tracker).options(num_cpus=0).remote()

    def stop(self) -> None:
        if self._tracker is not None:
            self.ray.kill(self._tracker)
            self._tracker = None
        if self._owns:
            self.ray.shutdown()
            self._owns = False

    def submit(self, driver: "SweepDriver", index: int, attempt: int) -> None:
        entry = driver.entries[index]
        upload = None
        if not self.shared and entry.get("run_dir") and Path(entry["run_dir"]).is_dir():
            # An interrupted run with its checkpoint: the node resumes it from a copy.
            upload = (Path(entry["run_dir"]).name, read_tree(entry["run_dir"]))
        elif entry.get("run_dir"):
            entry = dict(entry, run_dir=str(Path(entry["run_dir"]).resolve()))
        # Absolute paths: a worker's working folder is not this process's.
        ref = self._remote.remote(self.task_settings(driver.settings), entry, str(driver.folder.resolve()),
                                  self.shared, self._tracker, index, attempt, upload)
        self.inflight[ref] = (index, attempt)

    def run(self, driver: "SweepDriver") -> None:
        with _signals_interrupt(driver):
            try:
                self._collect(driver, deadline=None)
            except KeyboardInterrupt:
                driver.stop(driver.stopping or signal.SIGINT)
                console.warn(f"interrupted: the {len(self.inflight)} unfinished task(s) checkpoint and stop "
                             "after their batch (Ctrl-C again to stop at once)")
                for ref in list(self.inflight):
                    self.ray.cancel(ref)  # SIGINT in the worker: the runner checkpoints at the batch boundary
                try:
                    self._collect(driver, deadline=time.monotonic() + STOP_GRACE_S)
                except KeyboardInterrupt:
                    pass
                for ref in list(self.inflight):
                    self.ray.cancel(ref, force=True)
                    index, attempt = self.inflight.pop(ref)
                    driver.finished(index, attempt, {**_failed("stopped", driver.running_dir(index)),
                                                     "status": "interrupted"})

    def _collect(self, driver: "SweepDriver", deadline: float | None) -> None:
        ray = self.ray
        while self.inflight and (deadline is None or time.monotonic() < deadline):
            done, _ = ray.wait(list(self.inflight), num_returns=1, timeout=0.5)
            for index, attempt, run_dir, node in ray.get(self._tracker.drain.remote()):
                driver.started(index, attempt, run_dir, node)
            for ref in done:
                index, attempt = self.inflight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.TaskCancelledError:
                    outcome = {**_failed("cancelled"), "status": "interrupted" if driver.stopping else "failed"}
                except ray.exceptions.RayError as exc:  # the worker or its node died
                    outcome = _failed(_error_text(getattr(exc, "cause", None) or exc))
                if outcome.get("files") is not None:
                    outcome["run_dir"] = str(self._write_back(driver, index, outcome))
                elif not self.shared:
                    outcome["run_dir"] = None  # a node's temporary folder, gone
                else:
                    outcome["run_dir"] = outcome.get("run_dir") or driver.running_dir(index)
                driver.finished(index, attempt, outcome)

    def _write_back(self, driver: "SweepDriver", index: int, outcome: dict[str, Any]) -> Path:
        """Write a run folder that came back from a node without shared storage, as ``bench run`` would."""
        from bench.results import make_unique_dir

        files = outcome.pop("files")
        name = outcome.pop("run_name")
        previous = driver.entries[index].get("run_dir")
        folder = Path(previous) if previous and Path(previous).is_dir() else make_unique_dir(driver.folder, name)
        if "run.json" in files:  # the record names the node's temporary folder; name this one
            record = json.loads(files["run.json"])
            record.get("config", {})["out"] = str(driver.folder)
            files["run.json"] = (json.dumps(record, indent=2) + "\n").encode()
        write_tree(folder, files)
        return folder


# The driver ---------------------------------------------------------------------------------


class SweepDriver:
    """Hands the plan's unfinished entries to a backend, retries failures, keeps the plan current."""

    def __init__(self, sweep: Any, backend: Any, retries: int = 1):
        self.sweep = sweep
        self.backend = backend
        self.retries = retries
        self.settings: dict[str, Any] = sweep.plan["settings"]
        self.entries: list[dict[str, Any]] = sweep.plan["runs"]
        self.folder: Path = sweep.folder
        self.stopping: int | None = None
        self.attempt: dict[int, int] = {}  # the attempt each entry is on in this session
        self.started_at: dict[int, float] = {}
        self.ended_at: dict[int, float] = {}
        self.nodes: dict[int, str] = {}
        self.view = SweepView(self)

    def run(self) -> int:
        """Run every unfinished entry; return the exit status (1 if a run failed, 128+N if interrupted)."""
        from bench.compare import FINISHED

        todo = [i for i, e in enumerate(self.entries) if e["status"] not in FINISHED and not adopt(e, self.folder)]
        self.sweep.save()
        console.err.print(f"sweep {self.folder}: {len(self.entries)} runs, {len(todo)} to go, "
                          f"{self.backend.describe()}", soft_wrap=True, markup=False, highlight=False)
        with self.view:
            for index in todo:
                self._queue(index, 1)
            self.backend.run(self)
        if self.stopping is not None:
            console.err.print(f"interrupted; continue with: python -m bench sweep --resume {self.folder}", markup=False)
            return 128 + self.stopping
        return 1 if any(e["status"] == "failed" for e in self.entries) else 0

    def stop(self, signum: int) -> None:
        self.stopping = signum

    def running_dir(self, index: int) -> str | None:
        return self.entries[index].get("run_dir")

    def _queue(self, index: int, attempt: int) -> None:
        entry = self.entries[index]
        entry["status"] = "queued"
        self.attempt[index] = attempt
        self.started_at.pop(index, None)
        self.sweep.save()
        self.backend.submit(self, index, attempt)
        self.view.update()

    def started(self, index: int, attempt: int, run_dir: str | None, node: str | None) -> None:
        """A backend says attempt ``attempt`` of entry ``index`` is training (in ``run_dir``, on ``node``)."""
        from bench.compare import describe

        entry = self.entries[index]
        if entry["status"] != "queued" or self.attempt.get(index) != attempt:
            return  # a late message about an attempt that has already ended
        entry["status"] = "running"
        if run_dir is not None:
            entry["run_dir"] = run_dir  # saved now, so --resume finds its checkpoint if this process dies
        self.started_at[index] = time.monotonic()
        if node:
            self.nodes[index] = node
        self.sweep.save()
        self.view.started(f"{describe(entry)}" + (f" (attempt {attempt})" if attempt > 1 else "")
                          + (f" on {node}" if node else ""), index)

    def finished(self, index: int, attempt: int, outcome: dict[str, Any]) -> None:
        """A backend returns the outcome of attempt ``attempt`` of entry ``index``: record it, or retry."""
        from bench.compare import describe

        entry = self.entries[index]
        status = outcome["status"]
        if self.stopping is not None and status != "completed" and not outcome.get("run_dir"):
            entry["status"] = "pending"  # stopped before it began: it simply waits for --resume
            self.sweep.save()
            return
        self.ended_at[index] = time.monotonic()
        entry.update(status=status, run_dir=outcome.get("run_dir"), error=outcome.get("error"),
                     attempts=entry.get("attempts", 0) + 1)
        took = self._took(index)
        if status in ("completed", "diverged"):
            self.sweep.save()
            more = f" at step {outcome.get('diverged_at_step')}" if status == "diverged" else ""
            self.view.event(f"{status}{more} {describe(entry)}{took}", index)
            return
        if self.stopping is None and attempt <= self.retries:
            self.view.event(f"{status} {describe(entry)}{took}: {entry['error']}; retrying "
                            f"(attempt {attempt + 1} of {self.retries + 1})", index)
            if not (entry["run_dir"] and Path(entry["run_dir"], "checkpoint.pt").is_file()):
                discard(entry, self.folder)  # nothing to resume: the retry starts afresh
            self._queue(index, attempt + 1)
            return
        self.sweep.save()
        error = f": {entry['error']}" if entry["error"] and entry["status"] == "failed" else ""
        self.view.event(f"{entry['status']} {describe(entry)}{took}{error}", index)

    def _took(self, index: int) -> str:
        if index in self.started_at and index in self.ended_at:
            return f" in {self.ended_at[index] - self.started_at[index]:.1f}s"
        return ""

    def counts(self) -> dict[str, int]:
        counts = {"queued": 0, "running": 0, "finished": 0, "failed": 0, "interrupted": 0}
        for e in self.entries:
            s = e["status"]
            key = "queued" if s in WAITING else "finished" if s in ("completed", "diverged") else s
            counts[key] = counts.get(key, 0) + 1
        return counts


class SweepView:
    """Where a sweep stands: a live table on a terminal (Ray), plain lines otherwise."""

    #: Rows of the live table beyond the running and failed ones.
    MORE_ROWS = 6

    def __init__(self, driver: SweepDriver):
        self.driver = driver
        self.live = driver.backend.live and console.err.is_terminal
        self._live: Any = None

    def __enter__(self) -> "SweepView":
        if self.live:
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
        """Entry ``index`` began training: a rule above its own progress bar when it trains
        in this process, else an event line."""
        if self.driver.backend.live:
            self.event(f"started {text}", index)
        else:
            console.err.rule(f"[{index + 1}/{len(self.driver.entries)}] {text}", style="dim")

    def event(self, text: str, index: int) -> None:
        """Report one change; on a terminal under Ray the table shows it too."""
        console.err.print(f"{text}  [{self.summary()}]", soft_wrap=True, markup=False, highlight=False)
        self.update()

    def _table(self) -> Any:
        from rich.table import Table

        from bench.compare import describe

        driver = self.driver
        table = Table(title=f"sweep {driver.folder.name}: {self.summary()}", title_justify="left")
        for name, justify in (("#", "right"), ("run", "left"), ("status", "left"), ("attempt", "right"),
                              ("time", "right"), ("where", "left")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        entries = list(enumerate(driver.entries))
        shown = [i for i, e in entries if e["status"] in ("running", "failed", "interrupted")]
        done = [i for i in sorted(driver.ended_at, key=driver.ended_at.get) if i not in shown][-self.MORE_ROWS // 2:]
        waiting = [i for i, e in entries if e["status"] in WAITING][: self.MORE_ROWS - len(done)]
        now = time.monotonic()
        for i in sorted(set(shown + done + waiting)):
            e = driver.entries[i]
            since = driver.started_at.get(i)
            took = driver.ended_at.get(i, now) - since if since is not None else None
            style = {"running": "bold", "failed": "red", "interrupted": "yellow", "diverged": "yellow"}.get(e["status"])
            table.add_row(str(i + 1), describe(e), e["status"], str(driver.attempt.get(i, "-")),
                          "-" if took is None else f"{took:.0f}s", driver.nodes.get(i, "-"), style=style)
        hidden = len(entries) - table.row_count
        if hidden:
            table.caption = f"{hidden} more not shown"
        return table


# The command --------------------------------------------------------------------------------


def check_plan(plan: dict[str, Any], backend: Any) -> None:
    """Fail fast on the plan (``bench.compare.check_plan``) and on what the backend cannot give it."""
    from bench.compare import check_plan as check_settings

    check_settings(plan)
    backend.check(plan["settings"])


def make_backend(args: argparse.Namespace) -> Any:
    """The backend the options ask for, refusing options that belong to the other one."""
    ray_only = {"--address": args.address, "--cpus-per-run": args.cpus_per_run, "--gpus-per-run": args.gpus_per_run,
                "--no-shared-storage": args.shared}
    if args.backend == "local":
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only apply to --backend ray")
        return LocalBackend()
    cpus = 1 if args.cpus_per_run is None else args.cpus_per_run
    gpus = 0.0 if args.gpus_per_run is None else args.gpus_per_run
    if cpus < 1:
        raise UsageError(f"--cpus-per-run must be at least 1, got {cpus}")
    if gpus < 0:
        raise UsageError(f"--gpus-per-run must be 0 or more, got {gpus:g}")
    return RayBackend(args.address, cpus, gpus, shared=args.shared is not False)


def plan_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Validate the options and expand the grid: the arguments of :func:`create_sweep`."""
    from bench.compare import plan_settings
    from bench.registry import default_registry

    settings = plan_settings(args)
    registry = default_registry()
    for arch in args.arch:
        registry.entry(arch)
    grid = make_grid(args.grid, args.grid_file)
    for name in grid.per_arch:
        registry.entry(name)  # a typo in a [grid.NAME] table fails like a typo in --arch
    points = {arch: grid_points(arch, registry.load(arch), grid, settings["hparams"]) for arch in args.arch}
    if settings["batch_size"] is not None and any("batch_size" in p for ps in points.values() for p in ps):
        raise UsageError("--batch-size and a batch_size grid given together; keep one")
    return {"out": args.out, "archs": args.arch, "seeds": args.seeds, "grid": grid, "points": points,
            "settings": settings}


def cmd_sweep(args: argparse.Namespace) -> int:
    from bench.compare import Comparison
    from bench.report.aggregate import best_per_arch, group_runs, load_runs
    from bench.tables import hparams_text, print_comparison

    backend = make_backend(args)  # first: without Ray, say so before anything is written
    if args.retries < 0:
        raise UsageError(f"--retries must be 0 or more, got {args.retries}")
    if args.resume:
        given = [flag for flag, value in (("--arch", args.arch), ("--grid", args.grid), ("--grid-file", args.grid_file))
                 if value]
        if given:
            raise UsageError(f"--resume takes the plan from the sweep folder; drop {', '.join(given)}")
        sweep = Comparison.load(args.resume)
        check_plan(sweep.plan, backend)
        if args.retry_failed:
            for entry in sweep.plan["runs"]:
                if entry["status"] == "failed":
                    entry["status"] = "pending"
    else:
        if args.retry_failed:
            raise UsageError("--retry-failed goes with --resume SWEEP_DIR")
        planned = plan_sweep(args)
        backend.check(planned["settings"])
        sweep = None
    backend.start()  # Ray is up, or the cluster joined, before the sweep folder is made
    try:
        if sweep is None:
            sweep = create_sweep(**planned)
        status = SweepDriver(sweep, backend, args.retries).run()
    finally:
        backend.stop()
    try:
        groups = group_runs(load_runs([sweep.folder]), args.fid_target, by_hparams=True)
    except BenchError as exc:
        console.warn(f"no sweep table: {exc}")
        return status
    print_comparison(groups)
    for group, best in zip(groups, best_per_arch(groups)):
        for row in best.rows:
            fid = row.metrics["fid"]
            if fid.mean is not None and sum(r.arch == row.arch for r in group.rows) > 1:
                console.out.print(f"best {row.arch}: {hparams_text(group, row)}  FID {console.fmt(fid.mean)} "
                                  f"(mean over {fid.n} seed(s))", markup=False, highlight=False, soft_wrap=True)
    console.out.print(f"sweep: {sweep.folder}  (python -m bench report {sweep.folder} --best)",
                      markup=False, highlight=False, soft_wrap=True)
    return status


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def add_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``sweep`` on the CLI's subparsers and return its parser."""
    from bench.cli import add_training_options, parse_int
    from bench.compare import parse_archs, parse_seeds
    from bench.cli.options import positive_float
    from bench.config import DEFAULT_FID_TARGET

    p = subparsers.add_parser(
        "sweep", help="every architecture x seed x hyperparameter point, here or on Ray",
        description="Run every (architecture, seed, hyperparameter point) through the same runner: one after "
                    "another here (--backend local), or as one Ray task each (--backend ray), then print the "
                    "table with one row per architecture and point.",
    )
    p.add_argument("--arch", type=parse_archs, help="comma-separated architectures, e.g. vanilla,wgan,wgan-gp")
    p.add_argument("--seeds", type=parse_seeds, default=[0], metavar="N|LIST",
                   help="a count (3 = seeds 0,1,2) or a list (0,5,7); default 1")
    p.add_argument("--grid", action="append", type=parse_grid_option, default=[], metavar="KEY=V1,V2",
                   help="values of one hyperparameter, e.g. --grid lr=1e-4,2e-4 (repeatable; the points are "
                        "the cartesian product)")
    p.add_argument("--grid-file", metavar="FILE",
                   help="a TOML file: [grid] with key = [values], and [grid.ARCH] tables for one architecture")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: one run after another in this process (default); ray: one Ray task per run")
    ray = p.add_argument_group("Ray (--backend ray; needs: " + INSTALL_HINT + ")")
    ray.add_argument("--address", help="the Ray cluster to join (default: start Ray on this machine)")
    ray.add_argument("--cpus-per-run", type=parse_int, metavar="N",
                     help="CPUs each run declares and uses as torch threads (default 1)")
    ray.add_argument("--gpus-per-run", type=_number, metavar="N",
                     help="GPUs each run declares (default 0: the CPU; 1 places one run per GPU)")
    ray.add_argument("--no-shared-storage", dest="shared", action="store_false", default=None,
                     help="the nodes share no disk: each run's folder is sent back and written by this process")
    p.add_argument("--retries", type=parse_int, default=1, metavar="N",
                   help="run a failed run again up to N times before recording it as failed (default 1)")
    p.add_argument("--resume", metavar="SWEEP_DIR",
                   help="continue a sweep: skip finished points, resume interrupted runs from their checkpoints")
    p.add_argument("--retry-failed", action="store_true", help="with --resume: run the failed points again too")
    p.add_argument("--fid-target", type=positive_float, default=DEFAULT_FID_TARGET, metavar="FID",
                   help=f"FID for time-to-quality (default {DEFAULT_FID_TARGET:g})")
    add_training_options(p, seed=False)
    p.set_defaults(func=cmd_sweep)
    return p

