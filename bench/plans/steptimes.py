"""``step_times.json``: every architecture of a comparison timed side by side, in one process.

The training runs of a comparison follow one another, so their own step times also follow
the machine's load. Before them, ``bench compare`` times each architecture's training step in
rounds that alternate the architectures (same threads, same data path, warm-up left out):
the comparison table shows these times, with their spread, and a row whose spread is wide is
flagged. The runs keep their own timings in their run.json. No torch here: the report reads it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from bench.errors import UsageError
from bench.schema import OMIT_NONE, SchemaError, from_plain, to_plain
from bench.stats import Stats
from bench.storage import write_json

FILE = "step_times.json"


@dataclass(kw_only=True)
class ArchStepTimes:
    """One architecture's measured steps: every batch time, and the median of each round."""

    batch_size: int
    times_ms: list[float]
    round_medians_ms: list[float]

    #: A row is flagged when its rounds disagree by more than this (max / min of the round medians): the
    #: machine's load changed while it was timed. The spread of single batches is no sign of that, since a
    #: schedule has its own rhythm (wgan's generator step on every 5th batch).
    ROUNDS_DISAGREE: ClassVar[float] = 1.25

    @property
    def stats(self) -> Stats:
        return Stats.of(self.times_ms)

    @property
    def wide(self) -> bool:
        """Whether these times vary too much to be compared with confidence."""
        rounds = Stats.of(self.round_medians_ms)
        return bool(rounds.n > 1 and rounds.min and rounds.max / rounds.min > self.ROUNDS_DISAGREE)


@dataclass(kw_only=True)
class StepTimes:
    """The timing phase of one comparison."""

    created: str
    device: str
    threads: int
    precision: str
    rounds: int
    steps_per_round: int
    warmup_steps: int
    load_start: float | None = field(default=None, metadata=OMIT_NONE)
    load_end: float | None = field(default=None, metadata=OMIT_NONE)
    archs: dict[str, ArchStepTimes]

    def save(self, folder: str | os.PathLike) -> None:
        write_json(Path(folder) / FILE, to_plain(self))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> StepTimes | None:
        """The timing phase stored in ``folder``, or None when it has none.

        Raises:
            UsageError: the file is there but damaged.
        """
        path = Path(folder) / FILE
        if not path.is_file():
            return None
        try:
            return from_plain(cls, json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, RecursionError) as exc:
            raise UsageError(f"{path} is damaged ({type(exc).__name__})") from None
        except SchemaError as exc:
            raise UsageError(f"{path} is damaged ({exc})") from None
