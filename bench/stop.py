"""A request to stop at the next safe point, shared by the training loop and the plan driver.

The first SIGINT, SIGTERM or SIGHUP only records the request: the runner finishes its batch
and checkpoints, the plan driver starts nothing new. A second signal interrupts at once
(KeyboardInterrupt), except inside a :meth:`StopRequest.critical` section (a checkpoint or a
results file being written), which finishes first. Tests and callers request a stop directly.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any
from collections.abc import Callable, Iterator

from bench import console

#: The signals that ask a run to stop (SIGHUP: the terminal went away).
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(Exception):
    """Work cut short at a safe point because a stop was requested (an evaluation, between chunks)."""


class StopRequest:
    """Whether, and by which signal, a stop was asked for."""

    def __init__(self, message: str = "stopping after this batch and saving a checkpoint") -> None:
        self.signal: int | None = None
        self.message = message
        self._installed = False
        self._critical = 0
        self._deferred = False

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def check(self) -> None:
        """Raise :class:`Stopped` if a stop was requested."""
        if self.requested:
            raise Stopped(signal.Signals(self.signal).name)

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask for a stop, as the first signal would (without the warning)."""
        if self.signal is None:
            self.signal = signum

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is None:
            self.signal = signum
            console.warn(f"{signal.Signals(signum).name} received: {self.message} (again to stop at once)")
        elif self._critical:
            self._deferred = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[StopRequest]:
        """Turn the stop signals into requests while the block runs (main thread only; nesting is harmless)."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous: dict[int, Callable | int | None] = {s: signal.signal(s, self._handle) for s in SIGNALS}
        self._installed = True
        try:
            yield self
        finally:
            self._installed = False
            for s, handler in previous.items():
                signal.signal(s, handler)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A section a second signal does not cut short (it interrupts once the section ends)."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
            if not self._critical and self._deferred:
                self._deferred = False
                raise KeyboardInterrupt


class SharedStopRequest(StopRequest):
    """A stop request another process can make too, through a shared integer (the signal's number).

    The runs of ``--jobs`` train in processes of their own; the plan driver stops them all by
    setting the value, and each still handles its own signals.
    """

    def __init__(self, shared: Any, message: str = "stopping after this batch and saving a checkpoint"):
        super().__init__(message)
        self.shared = shared  # a multiprocessing.Value("i")

    @property
    def requested(self) -> bool:
        if self.signal is None and self.shared.value:
            self.signal = self.shared.value
        return self.signal is not None
