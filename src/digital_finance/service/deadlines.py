"""Request deadlines, kept by one sweep a few times a second instead of a timer each.

`asyncio.timeout` arms and disarms a timer per request: about 10 µs, a tenth of what a
one-record request costs the service. Here a request registers its task with its due time
(a dict entry), and a callback that runs every `resolution` seconds while any request is
registered cancels the tasks that are due. A deadline therefore fires up to `resolution`
late, which for limits of seconds is of no consequence.

Used as:

    deadline = deadlines.enter(seconds, task)
    try:
        ...  # awaits
    except asyncio.CancelledError:
        deadline.raise_if_expired()  # TimeoutError if this deadline cancelled it
        raise
    finally:
        deadline.leave()
"""

from __future__ import annotations

import asyncio
from typing import Any


class Deadlines:
    """The deadlines of the requests under way on one event loop."""

    def __init__(self, resolution: float = 0.25) -> None:
        self.resolution = resolution
        # insertion order is due order when every request has the same limit; a shorter
        # limit after a longer one is found on the sweep after its own time at the latest
        self._due: dict[Deadline, float] = {}
        self._sweeping: asyncio.TimerHandle | None = None

    def enter(self, seconds: float, task: asyncio.Task[Any] | None = None) -> Deadline:
        """A deadline `seconds` from now for `task` (the running task if not given)."""
        task = task or asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs a running task")
        loop = task.get_loop()
        deadline = Deadline(self, task)
        self._due[deadline] = loop.time() + seconds
        if self._sweeping is None:
            self._sweeping = loop.call_later(self.resolution, self._sweep, loop)
        return deadline

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweeping = None
        now = loop.time()
        due = [d for d, at in self._due.items() if at <= now]
        for deadline in due:
            del self._due[deadline]
            deadline.expire()
        if self._due:
            self._sweeping = loop.call_later(self.resolution, self._sweep, loop)

    def _leave(self, deadline: Deadline) -> None:
        self._due.pop(deadline, None)

    def __len__(self) -> int:
        return len(self._due)


class Deadline:
    """One request's deadline (see the module's docstring)."""

    __slots__ = ("_cancelling", "_owner", "_task", "expired")

    def __init__(self, owner: Deadlines, task: asyncio.Task[Any]) -> None:
        self._owner = owner
        self._task = task
        self._cancelling = task.cancelling()  # cancellations asked before this deadline
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def raise_if_expired(self) -> None:
        """`TimeoutError` if this deadline cancelled the task (and nothing else did too)."""
        if self.expired and self._task.uncancel() <= self._cancelling:
            raise TimeoutError

    def leave(self) -> None:
        """The request is past the part this deadline limits."""
        self._owner._leave(self)
