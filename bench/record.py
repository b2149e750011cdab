"""The run.json schema, declared once: a typed record with reading, validation and writing.

The runner builds a :class:`RunRecord` and writes it; ``bench report``, ``bench eval``, the
plan driver and the tests read it back through :func:`read_record`, which refuses a damaged,
mistyped or newer file with one line naming the file and the key. Unknown keys are ignored,
so a file with more than this version knows still reads.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from bench.config import Budget, RunConfig
from bench.errors import UsageError
from bench.layout import RUN_JSON, Status
from bench.storage import write_json

#: Bumped when run.json changes in a way older readers cannot follow.
SCHEMA_VERSION = 1
#: The final-evaluation metrics every table and CSV shows, in this order.
METRIC_NAMES = ("fid", "kid", "precision", "recall", "classifier_score", "modes_covered", "mode_kl")

#: Field metadata: leave the key out of the file when its value is None.
OMIT_NONE = {"omit_none": True}


@dataclass(kw_only=True)
class RecordedConfig(RunConfig):
    """``config``: every setting of the run with its defaults resolved."""

    budget: Budget
    image_size: int | None = None
    sample_seed: int | None = None

    #: Keys a readable run.json must have (RunConfig's own defaults do not apply to a record).
    _required: ClassVar[tuple[str, ...]] = ("budget", "batch_size", "seed", "hparams")


@dataclass(kw_only=True)
class TimingRecord:
    """``timing``: batch times with warm-up left out (see :mod:`bench.timing`)."""

    warmup_steps: int = 0
    measured_steps: int = 0
    step_ms_median: float
    step_ms_p10: float | None = None
    step_ms_p90: float | None = None
    step_ms_mean: float | None = None
    images_per_s: float
    wall_s: float
    spread_p90_p10: float | None = None
    eval_s: float = 0.0


@dataclass(kw_only=True)
class Losses:
    """``losses``: the last logged D and G loss."""

    d: float | None = None
    g: float | None = None


@dataclass(kw_only=True)
class DiscriminatorMeans:
    """``discriminator``: D's mean output on real and on generated images over the last log interval."""

    d_real: float | None = None
    d_fake: float | None = None


@dataclass(kw_only=True)
class Scores:
    """One evaluation's numbers on MNIST-classifier features (see :mod:`bench.metrics`)."""

    fid: float | None = None
    kid: float | None = None
    kid_std: float | None = None
    precision: float | None = None
    recall: float | None = None
    classifier_score: float | None = None
    modes_covered: int | None = None
    mode_shares: list[float] | None = None
    mode_kl: float | None = None
    fid_inception: float | None = field(default=None, metadata=OMIT_NONE)

    def value(self, name: str) -> Any:
        """The value of the metric ``name`` (one of :data:`METRIC_NAMES`, or ``kid_std``...)."""
        return getattr(self, name)


@dataclass(kw_only=True)
class Metrics(Scores):
    """``metrics`` (and each reference point): the scores, the time they took and how they were made."""

    eval_s: float | None = field(default=None, metadata=OMIT_NONE)
    protocol: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Evaluation:
    """One row of ``evaluations`` (and of metrics.csv): an evaluation during or after training."""

    step: int
    train_wall_s: float | None = None
    fid: float | None = None
    kid: float | None = None
    precision: float | None = None
    recall: float | None = None
    classifier_score: float | None = None
    modes_covered: int | None = None
    mode_kl: float | None = None
    eval_s: float | None = field(default=None, metadata=OMIT_NONE)

    @classmethod
    def of(cls, step: int, train_wall_s: float, metrics: Metrics) -> Evaluation:
        return cls(step=step, train_wall_s=train_wall_s, eval_s=metrics.eval_s,
                   **{name: metrics.value(name) for name in METRIC_NAMES})

    def value(self, name: str) -> Any:
        return getattr(self, name)


@dataclass(kw_only=True)
class Environment:
    """``env``: the software and hardware of the run (see :mod:`bench.environment`)."""

    python: str | None = None
    torch: str | None = None
    gan_bench: str | None = None
    platform: str | None = None
    device: str | None = None
    device_name: str
    cpu_model: str | None = None
    cpu_count: int | None = None
    torch_threads: int | None = None
    allocator: str | None = None
    gpu: str | None = None
    cuda: str | None = None
    git_commit: str | None = None
    argv: list[str] | None = None


@dataclass(kw_only=True)
class RunRecord:
    """run.json: one run's settings, progress, timing, results and environment."""

    schema_version: int = SCHEMA_VERSION
    arch: str
    status: Status
    diverged_at_step: int | None = None
    error: str | None = None
    stop_signal: str | None = None
    started: str | None = None
    updated: str | None = None
    config: RecordedConfig
    params: dict[str, int]
    flops_per_step: int | None = None
    steps: int = 0
    epochs: float | None = None
    images_seen: int = 0
    timing: TimingRecord
    losses: Losses = field(default_factory=Losses)
    discriminator: DiscriminatorMeans = field(default_factory=DiscriminatorMeans)
    metrics: Metrics | None = None
    evaluations: list[Evaluation] = field(default_factory=list)
    references: dict[str, Metrics] | None = None
    peak_memory_bytes: int | None = None
    env: Environment

    @property
    def seed(self) -> int:
        return self.config.seed

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON data, keys in the order of the file."""
        return _to_plain(self)

    def write(self, run_dir: str | os.PathLike) -> None:
        """Write ``run_dir/run.json`` atomically."""
        write_json(Path(run_dir) / RUN_JSON, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, where: str = RUN_JSON) -> RunRecord:
        """Validate plain JSON data against the schema; a :class:`UsageError` names what is wrong."""
        if not isinstance(data, dict):
            raise UsageError(f"{where}: damaged run.json (expected a JSON object, got {_json_type(data)})")
        version = data.get("schema_version")
        if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
            newer = "newer than this gan-bench reads" if version > SCHEMA_VERSION else "older than this gan-bench reads"
            fix = "upgrade gan-bench" if version > SCHEMA_VERSION else "rerun it, or read it with the gan-bench that wrote it"
            raise UsageError(f"{where}: schema_version {version} is {newer} ({SCHEMA_VERSION}); {fix}")
        missing = _missing(cls, data, "")
        if missing:
            raise UsageError(f"{where}: damaged run.json (missing {', '.join(missing)})")
        if isinstance(data.get("config"), dict) and "arch" not in data["config"]:
            data = {**data, "config": {**data["config"], "arch": data.get("arch")}}
        try:
            return _convert(cls, data, "")
        except _Mismatch as exc:
            raise UsageError(f"{where}: damaged run.json ({exc})") from None


def read_record(run_dir: str | os.PathLike) -> RunRecord:
    """Read a run folder's run.json, refusing damaged or incompatible ones with one clear line."""
    folder = Path(run_dir)
    file = folder / RUN_JSON
    if not file.is_file():
        raise UsageError(f"{folder} is not a run folder (no {RUN_JSON})")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{file}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{file}: damaged run.json (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{file}: damaged run.json (invalid JSON: {exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise UsageError(f"{file}: damaged run.json (nested too deeply)") from None
    return RunRecord.from_dict(data, str(file))


# Plain data <-> dataclasses ------------------------------------------------------------------


class _Mismatch(Exception):
    """A value of the wrong type at a dotted key."""


def _required(cls: type) -> tuple[str, ...]:
    declared = cls.__dict__.get("_required")
    if declared is not None:
        return declared
    return tuple(f.name for f in dataclasses.fields(cls)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass in ``tp`` (``X`` or ``X | None``), if any."""
    for candidate in (tp, *typing.get_args(tp)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _missing(cls: type, data: dict[str, Any], prefix: str) -> list[str]:
    """The dotted keys a readable file must have and ``data`` lacks, in the schema's order."""
    hints = typing.get_type_hints(cls)
    out = []
    required = _required(cls)
    for name in [*required, *(f.name for f in dataclasses.fields(cls) if f.name not in required)]:
        nested = _dataclass_of(hints[name])
        if name not in data:
            if name in required:
                out += _missing(nested, {}, f"{prefix}{name}.") if nested else [prefix + name]
        elif nested and isinstance(data[name], dict):
            out += _missing(nested, data[name], f"{prefix}{name}.")
    return out


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _type_text(tp: Any) -> str:
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return "a string"
    if tp is bool:
        return "true or false"
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict or (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return "an object"
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return " or ".join(_type_text(a) for a in args) + (" or null" if type(None) in typing.get_args(tp) else "")


def _convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` checked against the type ``tp`` (dataclasses built from objects)."""
    origin = typing.get_origin(tp)
    wrong = _Mismatch(f"{where or 'the file'} is {_json_type(value)}, expected {_type_text(tp)}")
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in typing.get_args(tp):
                return None
            raise wrong
        for option in (a for a in typing.get_args(tp) if a is not type(None)):
            try:
                return _convert(option, value, where)
            except _Mismatch:
                continue
        raise wrong
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise wrong
        hints = typing.get_type_hints(tp)
        prefix = f"{where}." if where else ""
        known = {f.name for f in dataclasses.fields(tp) if f.init}
        return tp(**{k: _convert(hints[k], v, prefix + k) for k, v in value.items() if k in known})
    if origin is list:
        if not isinstance(value, list):
            raise wrong
        (item,) = typing.get_args(tp)
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong
        _, item = typing.get_args(tp)
        return {k: _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(m.value for m in tp)
            raise _Mismatch(f"{where} is {value!r}, expected one of: {choices}") from None
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"run.json schema: unsupported type {tp!r} at {where}")
    if not ok:
        raise wrong
    return value


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.metadata.get("omit_none") and getattr(value, f.name) is None)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value
