"""A plan: several runs under one protocol, and where each of them stands.

``bench compare`` and ``bench sweep`` both make one: a comparison is a sweep with one
hyperparameter point per architecture. The plan lives in the plan folder as ``compare.json``
(the name of the release that introduced it), written atomically after every change, beside
the run folders it names. Run folders are stored relative to the plan, so a moved or copied
plan folder still finds its runs. No torch: the driver and the report read plans.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import console
from bench.config import PlanSettings, RunConfig, duration_text
from bench.errors import UsageError
from bench.layout import PLAN, Status
from bench.schema import OMIT_NONE, SchemaError, from_plain, json_type, missing_keys, to_plain
from bench.storage import make_unique_dir, utc_iso, utc_stamp, write_json

#: Every key a plan's ``settings`` may hold.
SETTING_KEYS = frozenset(f.name for f in dataclasses.fields(PlanSettings))


class PlanKind(str, enum.Enum):
    """Which command made the plan: its folder prefix, and how its report rows are formed."""

    COMPARE = "compare"  # one row per architecture
    SWEEP = "sweep"  # one row per architecture and hyperparameter point

    def __str__(self) -> str:
        return self.value


@dataclass(kw_only=True)
class PlanEntry:
    """One planned run: an architecture, a seed and a hyperparameter point."""

    arch: str
    seed: int
    hparams: dict[str, Any] = field(default_factory=dict)
    status: Status = Status.PENDING
    #: The run folder, relative to the plan folder (plans of gan-bench 0.1.0 hold absolute paths).
    run_dir: str | None = None
    attempts: int = 0
    error: str | None = None

    def describe(self) -> str:
        """``arch seed N [k=v ...]``, for progress lines and tables."""
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.hparams.items()))
        return f"{self.arch} seed {self.seed}" + (f" {extra}" if extra else "")


@dataclass
class Outcome:
    """How one attempt at a planned run ended."""

    status: Status
    run_dir: str | None = None
    error: str | None = None
    stop_signal: int | None = None
    diverged_at_step: int | None = None
    #: The run folder's files, when it was written where the driver cannot see it (Ray without shared storage).
    files: dict[str, bytes] | None = None

    @classmethod
    def failed(cls, error: str, run_dir: str | None = None) -> Outcome:
        """A run that failed before or outside its own record."""
        return cls(Status.FAILED, run_dir, error)


@dataclass(kw_only=True)
class Plan:
    """The plan file: how the runs are made, and one entry per run."""

    kind: PlanKind = PlanKind.COMPARE
    grid: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    created: str
    #: How the suite was started (``gan-bench`` or ``python -m bench``; unknown in older plans)...
    program: str | None = field(default=None, metadata=OMIT_NONE)
    #: ...and the command line that made the plan after it, for reports to reproduce it.
    command: list[str] | None = field(default=None, metadata=OMIT_NONE)
    archs: list[str]
    seeds: list[int]
    settings: PlanSettings
    runs: list[PlanEntry]
    folder: Path = field(default=Path("."), init=False)

    @classmethod
    def create(cls, out: str | os.PathLike, kind: PlanKind, archs: list[str], seeds: list[int],
               settings: PlanSettings, points: dict[str, list[dict[str, Any]]] | None = None,
               grid: dict[str, Any] | None = None, command: list[str] | None = None) -> Plan:
        """Create the folder ``<out>/<kind>-<UTC stamp>`` and its plan: one entry per (architecture,
        hyperparameter point, seed); without ``points`` each architecture has one point, its defaults."""
        folder = make_unique_dir(Path(out), f"{kind}-{utc_stamp()}")
        runs = [PlanEntry(arch=a, seed=s, hparams=p) for a in archs for p in (points[a] if points else [{}])
                for s in seeds]
        plan = cls(kind=kind, grid=grid, created=utc_iso(), program=console.program() if command else None,
                   command=command, archs=archs, seeds=seeds, settings=settings, runs=runs)
        plan.folder = folder
        plan.save()
        return plan

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Plan:
        """Read the plan in ``folder``, refusing a missing or damaged one with one line."""
        path = Path(folder) / PLAN
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"{path} cannot be read ({exc.strerror or type(exc).__name__}); "
                             f"is {folder} a comparison folder?") from None
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"{path} is damaged ({type(exc).__name__}); is {folder} a comparison folder?") from None
        plan = cls.from_dict(data, str(path))
        plan.folder = Path(folder)
        return plan

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Plan:
        if not isinstance(data, dict):
            raise UsageError(f"{where} is damaged (expected a JSON object, got {json_type(data)})")
        missing = missing_keys(cls, data)
        if missing:
            raise UsageError(f"{where} is damaged (missing {', '.join(missing)})")
        try:
            unknown = sorted(set(data["settings"]) - SETTING_KEYS) if isinstance(data["settings"], dict) else []
            if unknown:
                raise SchemaError(f"unknown settings: {', '.join(unknown)}")
            plan = from_plain(cls, data)
        except SchemaError as exc:
            raise UsageError(f"{where} is damaged ({exc})") from None
        return plan

    def save(self) -> None:
        write_json(self.folder / PLAN, to_plain(self))

    def run_path(self, entry: PlanEntry) -> Path | None:
        """Where ``entry``'s run folder is; a plan moved or copied with absolute paths finds its own copy."""
        if not entry.run_dir:
            return None
        path = Path(entry.run_dir)
        if not path.is_absolute():
            return self.folder / path
        local = self.folder / path.name
        return local if local.is_dir() else path

    def set_run_dir(self, entry: PlanEntry, path: str | os.PathLike | None) -> None:
        """Record ``path`` as ``entry``'s run folder: relative to the plan when it lies inside it."""
        if path is None:
            entry.run_dir = None
            return
        path = Path(path)
        inside = path.resolve().parent == self.folder.resolve()
        entry.run_dir = path.name if inside else str(path)

    def run_config(self, entry: PlanEntry) -> RunConfig:
        """The settings of ``entry``'s run, written into the plan folder."""
        return self.settings.run_config(arch=entry.arch, seed=entry.seed, out=str(self.folder),
                                        hparams={**self.settings.hparams, **entry.hparams})

    def command_text(self) -> str:
        """The command that made this plan: as typed, or rebuilt from the settings (older plans)."""
        if self.command is not None:
            return f"{self.program or console.MODULE_PROGRAM} {shlex.join(self.command)}"
        return _rebuild_command(self)


def _rebuild_command(plan: Plan) -> str:
    """The ``bench compare``/``sweep`` command that makes ``plan``'s runs, non-default settings only
    (for plans written before the command line was stored; ``--out`` is not known)."""
    settings, default = plan.settings, RunConfig(arch="-")
    seeds = plan.seeds
    parts = [f"{console.MODULE_PROGRAM} {plan.kind}", f"--arch {','.join(plan.archs)}",
             f"--seeds {len(seeds)}" if seeds == list(range(len(seeds))) else f"--seeds {','.join(map(str, seeds))}"]
    for key in ("epochs", "steps"):
        if getattr(settings, key) is not None:
            parts.append(f"--{key} {getattr(settings, key)}")
    if settings.time_budget is not None:
        parts.append(f"--time-budget {duration_text(settings.time_budget)}")
    if settings.eval_every_s:
        parts.append(f"--eval-every {duration_text(settings.eval_every_s)}")
    for key in ("eval_every", "batch_size", "device", "precision", "threads", "train_subset", "eval_samples",
                "log_every", "sample_every", "warmup_steps", "checkpoint_every", "data_dir"):
        if getattr(settings, key) != getattr(default, key):
            parts.append(f"--{key.replace('_', '-')} {getattr(settings, key)}")
    if not settings.eval:
        parts.append("--no-eval")
    parts += [f"--set {k}={v}" for k, v in sorted(settings.hparams.items())]
    grid = plan.grid or {}
    if grid.get("file"):
        parts.append(f"--grid-file {grid['file']}")
    parts += [f"--grid {key}={','.join(str(v) for v in values)}" for key, values in (grid.get("common") or {}).items()]
    return " ".join(parts)
