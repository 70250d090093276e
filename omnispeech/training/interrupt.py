"""Stopping a training run on Ctrl-C or a kill without losing it.

Inside ``with StopRequest(workers) as stop:`` the first SIGINT (Ctrl-C) or SIGTERM (``kill``,
a scheduler's pre-emption) only sets a flag; the training loop asks :meth:`StopRequest.agreed`
after each step, saves a checkpoint and returns, and the same command resumes from it. The
flag is reduced over all processes (any one asking stops them all), so every rank leaves the
loop after the same step: a rank that left alone would hang the others in their next
all-reduce. A second signal gets the handler that was there before (Ctrl-C then raises
:class:`KeyboardInterrupt` at once), for a run that must stop now.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any, Protocol

# Signals that ask a run to stop: Ctrl-C in a terminal, and `kill` / a job scheduler.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What the trainers print on the first signal (a step can take seconds on a CPU).
STOP_NOTICE = (
    "stopping after this step with a checkpoint; the same command resumes from it "
    "(Ctrl-C again quits at once, without saving)"
)


class _Reducer(Protocol):
    """What :class:`StopRequest` needs of the training processes (``Workers``)."""

    def maximum(self, value: float) -> float:
        """The largest ``value`` over processes (a collective call on every rank)."""
        ...


class StopRequest:
    """A stop asked for by a signal, agreed on by every training process.

    Args:
        workers: this process's place among the training processes (``Workers``), whose
            :meth:`maximum` reduces the flag over them.
        notice: written to stderr when the first signal arrives (None: nothing); says what
            happens next, since a step may take a while.
        signals: the signals to catch.
    """

    def __init__(
        self,
        workers: _Reducer,
        notice: str | None = None,
        signals: tuple[signal.Signals, ...] = STOP_SIGNALS,
    ) -> None:
        self.workers = workers
        self.notice = notice
        self.signals = signals
        self.received: signal.Signals | None = None  # the first signal, in this process
        self.stopped_by: signal.Signals | None = None  # set by agreed() when all stop
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopRequest:
        # Python delivers signals to the main thread only, and only it may set handlers; a
        # run started from another thread (a notebook worker, an app) keeps the defaults.
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self.received is None:
            self.received = sig
        # The next signal of this kind gets the previous handler: a second Ctrl-C is a
        # KeyboardInterrupt at once, a second SIGTERM the default termination.
        if sig in self._previous:
            signal.signal(sig, self._previous[sig])
        if self.notice is not None:
            sys.stderr.write(f"\n{self.notice}\n")
            sys.stderr.flush()

    def agreed(self) -> bool:
        """Whether any process has received a stop signal (the same answer on every rank).

        Call it at the same point of every step on every process: with several processes it
        is a collective operation (an all-reduce of one number).
        """
        # The signal's number, 0 for none: the maximum over ranks is non-zero when any rank
        # received one, and names a signal that one of them received.
        code = int(self.workers.maximum(float(self.received or 0)))
        if code and self.stopped_by is None:
            self.stopped_by = signal.Signals(code)
        return bool(code)
