"""Ctrl-C and SIGTERM: one line that says where the run stopped and what to do, exit 130/143.

The data is safe at any interruption (every table commit is atomic, and the next run
finishes a claimed batch), so a traceback would only hide the one thing the user needs: the
command to run next.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Interrupted(BaseException):
    """The process was asked to stop by a signal; `code` is the shell's exit code for it."""

    def __init__(self, number: int) -> None:
        super().__init__(signal.Signals(number).name)
        self.code = 128 + number


_RECEIVED: list[int] = []


def _raise(number: int, frame: FrameType | None) -> None:
    _RECEIVED.append(number)
    raise Interrupted(number)


def received() -> Interrupted | None:
    """The interruption, when a signal came: a library that caught it (DuckDB turns it into
    "Query interrupted") may have raised an error of its own instead."""
    return Interrupted(_RECEIVED[0]) if _RECEIVED else None


@contextmanager
def signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` inside the block (in the main thread)."""
    _RECEIVED.clear()  # a process may run many commands (notebooks, tests)
    previous = {n: signal.signal(n, _raise) for n in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def interrupted_message(stage: str, claimed: int | None) -> str:
    """The line printed when a run is interrupted."""
    if claimed is not None:
        return (
            f"interrupted while {stage}; batch {claimed} is claimed and partly written: run the "
            f"same command again to finish it (or `digital-finance batch abandon {claimed}`)"
        )
    return f"interrupted while {stage}, before any table was written; run the same command again"
