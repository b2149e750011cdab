"""Settings as data: a run's settings, a plan's, a budget, and hyperparameter overrides. No torch."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Mapping

from bench.errors import UsageError
from bench.schema import OMIT_NONE

#: Training precisions: fp32, or bf16 autocast with fp32 master weights.
PRECISIONS = ("fp32", "bf16")
#: FID (MNIST-classifier features) a run must fall below to count as having reached quality, by evaluation
#: scale (``--eval-scale``). Both follow one rule (results/fid_levels.py): the highest final FID below which
#: every run of a set made recognizable digits (all ten among 1,000 samples, at least half classified with 90%
#: confidence or more; MNIST's test digits: 98%). results/README.md shows both sets of runs.
#: 28x28 (train vs test 2.5, noise 2676): 8 20-epoch MLP runs held out from the published 28x28 table (seeds
#: 6 and 7); every one that finished below 347 made recognizable digits, none above (668 up), and 400 lies between.
#: 32x32 (train vs test 1.5, noise 1169): 48 runs of all six, 3 epochs on a GPU, held out from the equal-time
#: CPU table it judges; every one below 100 (80.9 at most) made them, none above (111.3, 49.9% sure, and up).
DEFAULT_FID_TARGETS = {28: 400.0, 32: 100.0}
#: The budget when none is given.
DEFAULT_EPOCHS = 5
#: The largest budgets: a run keeps one row of losses per batch in memory and in every checkpoint, so
#: two million batches (about 2,000 epochs at the study's batch 64; days on a GPU) is where that
#: stays under about a gigabyte; a week is the longest wall-clock budget.
MAX_BUDGET = {"epochs": 2_000, "steps": 2_000_000, "time_budget": 7 * 24 * 3600}
#: Seeds run from 0 to SEED_LIMIT - 1. torch takes seeds below 2**64, and epoch ``e``'s data
#: order is seeded with ``seed + e``, which from here stays far below that for any budget.
SEED_LIMIT = 2**32
#: The most seeds one ``--seeds`` may ask for (a plan holds an entry for each).
MAX_SEEDS = 10_000
#: The most CPU threads a run may ask torch for.
MAX_THREADS = 1024
#: The training split's size: an evaluation's reference points compare that many training
#: images with the test split, so no evaluation can use more.
MAX_EVAL_SAMPLES = 60_000
#: The fewest images an evaluation can score: precision and recall take each image's k = 3 nearest
#: neighbours among the others (``bench.scores.PR_K``).
MIN_EVAL_SAMPLES = 4


#: The sides an evaluation can bring every image to before scoring it (``--eval-scale``): MNIST's 28, and the 32
#: that the 32x32 architectures' training data are resized to.
EVAL_SCALES = (28, 32)

#: The settings a plan sets run by run; a plan's shared settings (:data:`PlanSettings`) are a RunConfig without
#: them. (``parallel_runs`` and ``parallelism`` are the backend's to set, on the settings it hands its runs.)
PER_RUN_KEYS = ("arch", "seed", "out")


@dataclass(frozen=True)
class Budget:
    """How long a run trains: ``epochs``, ``steps`` (batches) or ``time_budget`` (training seconds)."""

    kind: str
    value: float

    def text(self) -> str:
        """For people: ``600 steps``, ``5 epochs``, ``90 s time budget``."""
        if self.kind == "time_budget":
            return f"{self.value:g} s time budget"
        unit = {"steps": "step", "epochs": "epoch"}[self.kind]
        return f"{int(self.value):,} {unit}{'' if self.value == 1 else 's'}"


@dataclass
class RunConfig:
    """Every setting of a run; ``None`` means "resolve from the architecture or default"."""

    arch: str
    epochs: int | None = None
    steps: int | None = None
    time_budget: float | None = None
    batch_size: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    threads: int | None = None
    cuda_graphs: bool = False
    out: str = "results/runs"
    sample_every: int = 400
    log_every: int = 50
    warmup_steps: int = 10
    train_subset: int | None = None
    data_dir: str | None = None
    eval: bool = True
    eval_every: int | None = None
    eval_every_s: float | None = None
    eval_samples: int = 10_000
    checkpoint_every: int | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    #: The side every image, real or generated, is brought to before it is scored (``--eval-scale``); None:
    #: the architecture's own. Runs compare only on one scale.
    eval_scale: int | None = field(default=None, metadata=OMIT_NONE)
    #: Runs that trained on this machine at the same time as this one (``--jobs``; None: it trained
    #: alone): their step times shared the CPUs, which a report must say before it puts them beside
    #: a run's that did not.
    parallel_runs: int | None = field(default=None, metadata=OMIT_NONE)
    #: Why the plan's runs trained as they did (one after another, or side by side), where it was measured.
    parallelism: str | None = field(default=None, metadata=OMIT_NONE)

    def budget(self) -> Budget:
        """Return the one budget that applies, ``epochs=5`` when none was given."""
        given = [(k, v) for k, v in (("epochs", self.epochs), ("steps", self.steps), ("time_budget", self.time_budget))
                 if v is not None]
        if len(given) > 1:
            names = " and ".join("--" + k.replace("_", "-") for k, _ in given)
            raise UsageError(f"{names} given together; choose exactly one budget")
        kind, value = given[0] if given else ("epochs", DEFAULT_EPOCHS)
        flag = "--" + kind.replace("_", "-")
        if not value > 0 or math.isinf(value):
            raise UsageError(f"{flag} must be a positive number, got {value}")
        if value > MAX_BUDGET[kind]:
            text = duration_text if kind == "time_budget" else "{:,}".format
            raise UsageError(f"{flag} must be at most {text(MAX_BUDGET[kind])}, got {text(value)}")
        return Budget(kind, value)

    def validate(self) -> None:
        """Raise :class:`UsageError` for settings that cannot work, before anything is built."""
        self.budget()
        positive = {"--batch-size": self.batch_size, "--threads": self.threads, "--log-every": self.log_every,
                    "--eval-every": self.eval_every, "--checkpoint-every": self.checkpoint_every}
        for flag, value in positive.items():
            if value is not None and value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        for flag, value in {"--sample-every": self.sample_every, "--warmup-steps": self.warmup_steps}.items():
            if value < 0:
                raise UsageError(f"{flag} must be 0 or more, got {value}")
        check_seed(self.seed)
        if self.threads is not None and self.threads > MAX_THREADS:
            raise UsageError(f"--threads must be at most {MAX_THREADS}, got {self.threads}")
        check_eval_samples(self.eval_samples)
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown --precision {self.precision!r}; choose from: {', '.join(PRECISIONS)}")
        if (self.eval_every is not None or self.eval_every_s is not None) and not self.eval:
            raise UsageError("--eval-every and --no-eval given together")
        if self.eval_every_s is not None and not self.eval_every_s > 0:
            raise UsageError(f"--eval-every must be positive, got {self.eval_every_s}s")
        check_eval_scale(self.eval_scale)

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **given: Any) -> RunConfig:
        """A config from recorded settings (run.json's config); keys it does not
        have (``budget``, ``image_size``, ... in run.json) are left out."""
        known = cls.field_names()
        return cls(**{**{k: v for k, v in settings.items() if k in known}, **given})


def _shared(cfg: Any) -> dict[str, Any]:
    """The settings of ``cfg`` (a RunConfig or PlanSettings) that every run of a plan shares."""
    return {name: getattr(cfg, name) for name in RunConfig.field_names() if name not in PER_RUN_KEYS}


def _run_config(self: Any, **given: Any) -> RunConfig:
    """The settings of one of the plan's runs: these, and ``given`` (its ``arch``, ``seed``, ``out``, ...)."""
    return RunConfig(**{**_shared(self), **given})


def _validate(self: Any) -> None:
    """Raise :class:`UsageError` for settings that cannot work (as :meth:`RunConfig.validate`)."""
    self.run_config(arch="-").validate()


def _budget(self: Any) -> Budget:
    return self.run_config(arch="-").budget()


#: A plan's settings (``settings`` in its file): every field of :class:`RunConfig` but :data:`PER_RUN_KEYS`, with
#: its type, default and order, then how the plan's runs train together (``--stack``, ``--stack-size``). Made from
#: RunConfig's fields so that a setting is declared once. Checked where it enters: by the command line's
#: :func:`bench.cli.options.plan_settings`, and by :func:`bench.plans.execute.load_plan` for a plan read back.
PlanSettings = dataclasses.make_dataclass(
    "PlanSettings",
    [(f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory, metadata=f.metadata))
     for f in dataclasses.fields(RunConfig) if f.name not in PER_RUN_KEYS]
    + [("stack", "bool | None", dataclasses.field(default=None, metadata=OMIT_NONE)),
       ("stack_size", "int | None", dataclasses.field(default=None, metadata=OMIT_NONE))],
    kw_only=True,
    namespace={"run_config": _run_config, "validate": _validate, "budget": _budget},
)
PlanSettings.__module__ = __name__


def plan_settings_of(cfg: RunConfig, **plan: Any) -> PlanSettings:
    """The plan settings every run of ``cfg``'s plan shares (``plan``: ``stack``, ``stack_size``)."""
    return PlanSettings(**_shared(cfg), **plan)


def check_seed(seed: int, flag: str = "--seed") -> None:
    """Raise :class:`UsageError` unless ``0 <= seed < SEED_LIMIT``."""
    if not 0 <= seed < SEED_LIMIT:
        raise UsageError(f"{flag} must be between 0 and {SEED_LIMIT - 1}, got {seed}")


def check_eval_scale(scale: int | None, image_size: int | None = None, arch: str | None = None) -> None:
    """Raise :class:`UsageError` unless ``scale`` is one of :data:`EVAL_SCALES` (or None) and at least ``image_size``,
    the side of ``arch``'s images (an evaluation brings images up to its scale, never down)."""
    if scale is None:
        return
    if scale not in EVAL_SCALES:
        raise UsageError(f"--eval-scale must be one of {', '.join(map(str, EVAL_SCALES))}, got {scale}")
    if image_size is not None and scale < image_size:
        raise UsageError(f"--eval-scale {scale} is below the {image_size}x{image_size} images of {arch or 'these'}; "
                         f"use --eval-scale {image_size} or more (images are brought up to the scale, never down)")


def default_fid_target(scale: int | None) -> float:
    """The time-to-quality target of evaluations at ``scale`` (None, as for runs never evaluated: 28)."""
    return DEFAULT_FID_TARGETS[scale or 28]


def check_eval_samples(n: int) -> None:
    """Raise :class:`UsageError` unless ``n`` images can be evaluated (:data:`MIN_EVAL_SAMPLES` to the training
    split's size): the one check of ``--eval-samples``, where it is given and where an evaluator is built."""
    if n < MIN_EVAL_SAMPLES:
        raise UsageError(f"--eval-samples must be at least {MIN_EVAL_SAMPLES} (precision and recall compare each "
                         f"image with its {MIN_EVAL_SAMPLES - 1} nearest neighbours), got {n}")
    if n > MAX_EVAL_SAMPLES:
        raise UsageError(f"--eval-samples must be at most {MAX_EVAL_SAMPLES} (the reference points compare that "
                         f"many training images), got {n}")


def duration_text(seconds: float) -> str:
    """The shortest of ``2h``, ``10m`` or ``90s`` for ``seconds``, as ``--time-budget`` reads it."""
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


# Hyperparameter ranges -------------------------------------------------------------------------
#
# A config field declares the values it takes in its metadata, and every config made by
# apply_overrides (so every ArchSpec.make_config) is checked against it, defaults included:
#
#     lr: float = field(default=2e-4, metadata=positive())
#     b1: float = field(default=0.5, metadata=between(0, 1))
#     n_critic: int = field(default=5, metadata=at_least(1))
#
# A float field must be finite whether it declares a range or not (``Range(finite=False)``
# lets one take infinities); a tuple field's range applies to each of its items.

#: The metadata key of a field's :class:`Range`.
RANGE = "gan_bench.range"


@dataclass(frozen=True)
class Range:
    """The numbers a hyperparameter may take: ``low`` (exclusive if ``low_open``) up to ``high``
    (exclusive if ``high_open``), finite unless ``finite`` is False."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    finite: bool = True

    def admits(self, value: float) -> bool:
        """Return whether ``value`` lies in the range (NaN never does)."""
        if math.isnan(value) or (self.finite and math.isinf(value)):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def text(self, is_float: bool) -> str:
        """Describe the range for messages: ``a positive finite number``, ``a finite number in [0, 1)``."""
        kind = "a finite number" if is_float and self.finite else "a number"
        low = None if self.low is None else ("above " if self.low_open else "at least ") + f"{self.low:g}"
        high = None if self.high is None else ("below " if self.high_open else "at most ") + f"{self.high:g}"
        if low and high:
            opening, closing = "([" [not self.low_open], ")]"[not self.high_open]
            return f"{kind} in {opening}{self.low:g}, {self.high:g}{closing}"
        if self.low == 0 and self.low_open:
            return kind.replace("a ", "a positive ", 1)
        bound = low or high
        if bound is None:
            return kind
        if not is_float:
            return bound
        return f"{kind} {'of ' if bound.startswith('at') else ''}{bound}"


def positive() -> dict[str, Range]:
    """Return field metadata for values above 0: ``field(default=2e-4, metadata=positive())``."""
    return {RANGE: Range(low=0, low_open=True)}


def at_least(low: float) -> dict[str, Range]:
    """Return field metadata for values of ``low`` or more: ``field(default=5, metadata=at_least(1))``."""
    return {RANGE: Range(low=low)}


def between(low: float, high: float) -> dict[str, Range]:
    """Return field metadata for ``low <= value < high``, half-open like ``range()``: ``metadata=between(0, 1)``."""
    return {RANGE: Range(low=low, high=high, high_open=True)}


def check_ranges(config: Any) -> None:
    """Raise :class:`UsageError` naming the first field of ``config`` outside its declared range."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        declared = f.metadata.get(RANGE, Range())
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if not declared.admits(item):
                raise UsageError(f"hyperparameter {f.name} must be {declared.text(isinstance(item, float))}, "
                                 f"got {_shown(value)}")


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """Return the dataclass ``config`` with ``overrides`` applied, coercing strings to the field types.

    Raises:
        UsageError: an unknown key, a value of the wrong type, or a value outside its field's
            declared :class:`Range` (every field is checked, defaults included).
    """
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes = {}
    for key, value in overrides.items():
        if key not in fields:
            raise UsageError(f"unknown hyperparameter {key!r}; choose from: {', '.join(sorted(fields))}")
        current = getattr(config, key)
        changes[key] = _coerce(key, value, current) if isinstance(value, str) else _typed(key, value, current)
    config = dataclasses.replace(config, **changes)
    check_ranges(config)
    return config


def _typed(key: str, value: Any, current: Any) -> Any:
    """Return ``value`` (from JSON or TOML, not a string) as ``current``'s type, or raise UsageError."""
    if current is None or value is None:
        return value
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(current):
            raise UsageError(f"hyperparameter {key}={value!r} is not a valid tuple of {len(current)} values")
        return tuple(_typed(key, v, c) for v, c in zip(value, current, strict=True))
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # TOML and JSON write 1e-3 as a float, but 1 as an int
    if isinstance(value, bool) != isinstance(current, bool) or not isinstance(value, type(current)):
        raise UsageError(f"hyperparameter {key}={value!r} is not a valid {type(current).__name__}")
    return value


def _coerce(key: str, text: str, current: Any) -> Any:
    kind = type(current)
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind is tuple:
            items = [s for s in text.strip("()[] ").split(",") if s.strip()]
            return tuple(type(c)(s) for c, s in zip(current, items, strict=True))
        if kind in (int, float, str):
            return kind(text)
    except ValueError:
        raise UsageError(f"hyperparameter {key}={text!r} is not a valid {kind.__name__}") from None
    raise UsageError(f"hyperparameter {key} of type {kind.__name__} cannot be set from the command line")
