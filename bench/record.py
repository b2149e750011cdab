"""The run.json schema, declared once: a typed record with reading, validation and writing.

The runner builds a :class:`RunRecord` and writes it; ``bench report``, ``bench eval``, the
plan driver and the tests read it back through :func:`read_record`, which refuses a damaged,
mistyped or newer file with one line naming the file and the key. Unknown keys are ignored,
so a file with more than this version knows still reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.config import Budget, RunConfig
from bench.errors import UsageError
from bench.layout import RUN_JSON, Status
from bench.schema import OMIT_NONE, SchemaError, from_plain, json_type, missing_keys, to_plain
from bench.scores import METRIC_NAMES, METRICS
from bench.storage import write_json

#: Bumped when run.json changes in a way older readers cannot follow.
SCHEMA_VERSION = 1


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
class StackInfo:
    """``stack``: the stack of seeds a run trained in (``--stack``); absent for a run trained alone.

    ``runs`` are the stack's run folders, this one included, relative to this run's folder's
    parent (so a moved plan folder keeps them). The run's ``timing`` is of one stacked step,
    which trained ``size`` seeds at once; ``step_ms_per_seed`` is its median over ``size``.
    """

    id: str
    seeds: list[int]
    size: int
    runs: list[str]
    step_ms_per_seed: float | None = None


@dataclass(kw_only=True)
class Contention:
    """``contention``: how much of the machine the run had while it trained.

    ``cpu_s`` is this process's CPU time (all threads) over the ``wall_s`` of training, so
    ``cpu_share`` is the part of its ``threads`` it actually got; the load averages (1 minute)
    show what else ran. A run that got much less than its threads timed its neighbours' load.
    """

    cpu_s: float
    wall_s: float
    threads: int
    usable_cpus: int | None = None
    load_start: float | None = None
    load_end: float | None = None

    #: A run whose cpu_share falls below this is flagged as contended.
    CONTENDED_BELOW: ClassVar[float] = 0.75

    @property
    def cpu_share(self) -> float | None:
        """CPU time over wall time and threads: 1.0 when every thread ran all the time."""
        return self.cpu_s / (self.wall_s * self.threads) if self.wall_s > 0 and self.threads else None

    @property
    def contended(self) -> bool:
        share = self.cpu_share
        return share is not None and share < self.CONTENDED_BELOW


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


def _metric_fields(headline_only: bool) -> list[tuple[str, Any, Any]]:
    """One field per metric of :data:`bench.scores.METRICS` (the headline ones only, if asked): the record's
    metric keys are the descriptors', in their order. A metric not computed is left out of the file rather
    than written as null, so a run.json made before a metric existed writes back unchanged."""
    return [(m.name, m.type | None, field(default=None, metadata=OMIT_NONE))
            for m in METRICS if m.headline or not headline_only]


def _value(self: Any, name: str) -> Any:
    """The value of the metric ``name`` (see :data:`bench.scores.METRICS`)."""
    return getattr(self, name)


def _scores_base(name: str, doc: str, headline_only: bool) -> type:
    cls = dataclasses.make_dataclass(name, _metric_fields(headline_only), kw_only=True, namespace={"value": _value})
    cls.__module__, cls.__doc__ = __name__, doc
    return cls


Scores = _scores_base("Scores", "One evaluation's numbers on MNIST-classifier features: a field per metric of "
                      ":data:`bench.scores.METRICS` (see :mod:`bench.metrics`).", headline_only=False)


@dataclass(kw_only=True)
class Metrics(Scores):
    """``metrics`` (and each reference point): the scores, the time they took and how they were made."""

    eval_s: float | None = field(default=None, metadata=OMIT_NONE)
    protocol: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class _EvaluationTime:
    step: int
    train_wall_s: float | None = None
    #: The training process's CPU seconds (all its threads; a stack's seeds share one process) at this
    #: evaluation: unlike wall seconds, other processes' load does not inflate them. Not in older runs.
    train_cpu_s: float | None = field(default=None, metadata=OMIT_NONE)


_HeadlineScores = _scores_base("_HeadlineScores", "The headline metrics of :data:`bench.scores.METRICS`.",
                               headline_only=True)


@dataclass(kw_only=True)
class Evaluation(_HeadlineScores, _EvaluationTime):
    """One row of ``evaluations`` (and of metrics.csv): an evaluation during or after training.

    The step and training time first, then a field per headline metric, then how long it took.
    """

    eval_s: float | None = field(default=None, metadata=OMIT_NONE)

    @classmethod
    def of(cls, step: int, train_wall_s: float, metrics: Metrics, train_cpu_s: float | None = None) -> Evaluation:
        return cls(step=step, train_wall_s=train_wall_s, train_cpu_s=train_cpu_s, eval_s=metrics.eval_s,
                   **{name: metrics.value(name) for name in METRIC_NAMES})


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
    #: How the suite was started (``gan-bench`` or ``python -m bench``), and the command line after that.
    program: str | None = field(default=None, metadata=OMIT_NONE)
    argv: list[str] | None = None


@dataclass(kw_only=True)
class RunRecord:
    """run.json: one run's settings, progress, timing, results and environment."""

    schema_version: int = SCHEMA_VERSION
    arch: str
    #: The distribution that provided the architecture, and its version (unknown for a spec given directly).
    package: str | None = field(default=None, metadata=OMIT_NONE)
    package_version: str | None = field(default=None, metadata=OMIT_NONE)
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
    contention: Contention | None = field(default=None, metadata=OMIT_NONE)
    stack: StackInfo | None = field(default=None, metadata=OMIT_NONE)

    @property
    def seed(self) -> int:
        return self.config.seed

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON data, keys in the order of the file."""
        return to_plain(self)

    def write(self, run_dir: str | os.PathLike) -> None:
        """Write ``run_dir/run.json`` atomically."""
        write_json(Path(run_dir) / RUN_JSON, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, where: str = RUN_JSON) -> RunRecord:
        """Validate plain JSON data against the schema; a :class:`UsageError` names what is wrong."""
        if not isinstance(data, dict):
            raise UsageError(f"{where}: damaged run.json (expected a JSON object, got {json_type(data)})")
        version = data.get("schema_version")
        if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
            newer = "newer than this gan-bench reads" if version > SCHEMA_VERSION else "older than this gan-bench reads"
            fix = ("upgrade gan-bench" if version > SCHEMA_VERSION
                   else "rerun it, or read it with the gan-bench that wrote it")
            raise UsageError(f"{where}: schema_version {version} is {newer} ({SCHEMA_VERSION}); {fix}")
        missing = missing_keys(cls, data)
        if missing:
            raise UsageError(f"{where}: damaged run.json (missing {', '.join(missing)})")
        if isinstance(data.get("config"), dict) and "arch" not in data["config"]:
            data = {**data, "config": {**data["config"], "arch": data.get("arch")}}
        try:
            return from_plain(cls, data)
        except SchemaError as exc:
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
