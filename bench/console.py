"""One door for output: the consoles, the training progress view and the tables.

Results and tables go to stdout; progress, warnings and errors to stderr. When stderr is
not a terminal the progress bar degrades to plain periodic lines.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from typing import Any
from collections.abc import Iterable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # logs and pipes: wide tables stay readable instead of folding at 80
    console.on_broken_pipe = reader_gone  # rich's own ends the process with exit 1
    return console


def reader_gone() -> None:
    """The reader of stdout has gone (``| head -1``): drop the rest of the output and carry on, so the exit
    status stays the command's own and the files it writes are still written."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


out = _console(stderr=False)
err = _console(stderr=True)

#: How the suite is started where it cannot tell (imported, or run by a test runner).
MODULE_PROGRAM = "python -m bench"


#: The command being carried out, as JSON ``[program, *argv]``: set by :func:`carrying_out`, and inherited by the
#: processes that train its runs, whose own ``sys.argv`` is the parent's (spawn) or a worker's (Ray).
COMMAND_VARIABLE = "GAN_BENCH_COMMAND"


def program() -> str:
    """The command the user typed to start the suite, for usage lines and the commands messages suggest:
    ``gan-bench`` from the installed script, else ``python -m bench`` (as pip does for ``python -m pip``)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "gan-bench" if name.removesuffix(".exe").removesuffix("-script.py") == "gan-bench" else MODULE_PROGRAM


@contextlib.contextmanager
def carrying_out(argv: list[str]) -> Iterator[None]:
    """Within this block the command being carried out is ``program() argv``, whatever ``sys.argv`` holds
    (a notebook's kernel, a test runner), for the runs to record what made them."""
    before = os.environ.get(COMMAND_VARIABLE)
    os.environ[COMMAND_VARIABLE] = json.dumps([program(), *argv])
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(COMMAND_VARIABLE, None)
        else:
            os.environ[COMMAND_VARIABLE] = before


def command_carried_out() -> tuple[str, list[str]]:
    """The program and command line of the command being carried out (:func:`carrying_out`), else this
    process's own."""
    words = os.environ.get(COMMAND_VARIABLE)
    if words:
        program_name, *argv = json.loads(words)
        return program_name, argv
    return program(), sys.argv[1:]


def error(message: str) -> None:
    """Print one error line to stderr."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)


def warn(message: str) -> None:
    """Print one warning line to stderr."""
    err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def fmt(value: Any, digits: int = 4) -> str:
    """Format a number for a table: compact, with '-' for missing and 'nan' kept visible."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.{digits}g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def key_value_table(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
    """A two-column table of labelled values."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in rows:
        table.add_row(label, value if isinstance(value, str) else fmt(value))
    return table


class TrainingProgress:
    """A live bar for a training run, or plain lines when stderr is not a terminal.

    Args:
        arch: shown at the left of the bar.
        total_steps: the step budget, or None under a time budget.
        time_budget: seconds, when the budget is wall-clock time.
    """

    def __init__(self, arch: str, total_steps: int | None, time_budget: float | None):
        self.arch = arch
        self.total_steps = total_steps
        self.time_budget = time_budget
        self.live = err.is_terminal
        # "-" until the first losses are known: a NaN there reads as a divergence
        self.fields = {"d": "-", "g": "-", "ips": "-"}
        self._last_line = 0.0
        self._last_step = -1
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> TrainingProgress:
        if self.live:
            total = self.total_steps if self.total_steps is not None else self.time_budget
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn() if self.total_steps is not None else TextColumn("{task.fields[steps]} steps"),
                TimeRemainingColumn(),
                TextColumn("D {task.fields[d]}  G {task.fields[g]}  {task.fields[ips]} img/s"),
                console=err,
                refresh_per_second=4,
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.arch, total=total, steps=0, **self.fields)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, step: int, elapsed: float, **fields: float) -> None:
        """Record that ``step`` batches are done after ``elapsed`` training seconds."""
        self.fields.update({k: f"{v:,.0f}" if k == "ips" else f"{v:.3f}" for k, v in fields.items()})
        if self._progress is not None:
            completed = step if self.total_steps is not None else min(elapsed, self.time_budget or 0.0)
            self._progress.update(self._task, completed=completed, steps=step, **self.fields)

    def line(self, step: int, elapsed: float, force: bool = False) -> None:
        """Print a plain progress line (only when not live), at most every few seconds."""
        if self.live:
            return
        now = time.monotonic()
        if step == self._last_step or (not force and now - self._last_line < 5.0):
            return
        self._last_line, self._last_step = now, step
        if self.total_steps is not None:
            where = f"step {step}/{self.total_steps}"
            left = (self.total_steps - step) * elapsed / step if step else float("nan")
        else:
            where = f"step {step}"
            left = max(0.0, (self.time_budget or 0.0) - elapsed)
        f = self.fields
        err.print(
            f"{self.arch}: {where}  D {f['d']}  G {f['g']}  {f['ips']} img/s  "
            f"elapsed {elapsed:.0f}s  left ~{left:.0f}s",
            soft_wrap=True,
        )
