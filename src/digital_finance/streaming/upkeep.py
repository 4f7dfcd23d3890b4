"""Table maintenance kept by a running stream, in a process of its own.

A stream commits a version to every table, and a file to most, once per trigger. Every
`every_seconds` of running it compacts, checkpoints and cleans its tables, so that the
hundredth thousand batch costs what the first did. It does so beside its batches
(`Lakehouse.maintain_beside_writers`): small files are rewritten with no lock held and only
each swap's commit takes the commit lock, so a batch waits tens of milliseconds for it, not
the seconds a whole compaction takes. (Maintaining between batches under the lock put five
minutes of compaction, 4.9 s at 20k events/s, into one batch: the stream's p99 latency.)

The passes run in a child process at a lower CPU priority. On a thread of the stream's own
process they took the interpreter lock from the batches, and a thread at low priority that
holds that lock stalls the batches behind it: a pass took 10 to 12 s instead of 4 and the
batches beside it twice their time. The child is started when the first pass is due (a
short run never pays for it), is asked for one pass at a time, and leaves when the stream
stops or dies: a pass cut short anywhere leaves the tables as they were (a rewrite not yet
swapped in is in a scratch folder the next run removes).

A run that is started and stopped often (`--once` from cron) is maintained by
`digital-finance maintain` on a schedule instead (docs/STREAMING.md).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from digital_finance.api import Lakehouse
    from digital_finance.lakehouse.maintenance import MaintenanceReport

log = logging.getLogger(__name__)

NICENESS = 10  # the maintenance process's CPU priority below the stream's
_STOP_WAIT_SECONDS = 30.0  # how long a stopping stream waits for the step under way


class Upkeep:
    """Maintains a lakehouse once `every_seconds` have passed, then every `every_seconds`
    after the last pass ended (0: never). `between_batches` does it in the caller's
    process; `start` hands it to a child process until `close`."""

    def __init__(
        self,
        lake: Lakehouse,
        every_seconds: float,
        on_done: Callable[[MaintenanceReport], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lake, self.every, self.on_done, self.clock = lake, every_seconds, on_done, clock
        self.due = clock() + every_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: _Worker | None = None

    def between_batches(self) -> MaintenanceReport | None:
        """Maintain now, in this process, if it is due; what was done, or None."""
        if self.every <= 0 or self.clock() < self.due:
            return None
        return self._pass(lambda: self.lake.maintain_beside_writers(stop=self._stopping.is_set))

    def _pass(self, maintain: Callable[[], MaintenanceReport]) -> MaintenanceReport | None:
        self.due = self.clock() + self.every
        try:
            report = maintain()
        except Exception as exc:
            log.warning("table maintenance failed, tried again in %.0f s: %s", self.every, exc)
            return None
        self.due = self.clock() + self.every
        if self.on_done is not None:
            self.on_done(report)
        return report

    def start(self) -> None:
        """Maintain in a child process, paced by a thread of this one, until `close`."""
        if self.every <= 0 or self._thread is not None:
            return
        self.lake.checkpoints_by_upkeep = True  # each pass checkpoints every table
        self._thread = threading.Thread(target=self._run, name="table-upkeep", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop after the step under way (one bounded rewrite and its commit)."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.stop()
        if self._thread is not None:
            self._thread.join(_STOP_WAIT_SECONDS)
        if self._worker is not None:  # killed if its step outlasts the wait
            self._worker.close()
            self._worker = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self.lake.checkpoints_by_upkeep = False

    def _run(self) -> None:
        while not self._stopping.wait(max(0.0, self.due - self.clock())):
            if self._worker is not None and not self._worker.alive():
                self._worker.close()  # it died (killed, out of memory): a new one takes over
                self._worker = None
            if self._worker is None:
                self._worker = _Worker(self.lake)
                if self._stopping.is_set():
                    break
            self._pass(self._worker.one_pass)

    @property
    def worker_pid(self) -> int | None:
        """The child process's id, once it was started."""
        return self._worker.pid if self._worker is not None else None


class _Worker:
    """The child process that maintains the lakehouse, one pass per request."""

    def __init__(self, lake: Lakehouse) -> None:
        context = multiprocessing.get_context("spawn")  # no fork beside librdkafka's threads
        self._stopping = context.Event()
        self._here, there = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(lake.root, lake.config, there, self._stopping, os.getpid()),
            name="digital-finance-upkeep",
            daemon=True,
        )
        self._process.start()
        there.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.is_alive()

    def one_pass(self) -> MaintenanceReport:
        self._here.send("pass")
        outcome, value = self._here.recv()  # EOFError when the child died: a failed pass
        if outcome == "failed":
            raise RuntimeError(value)
        report: MaintenanceReport = value
        return report

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._here.send(None)
        self._process.join(_STOP_WAIT_SECONDS)
        if self._process.is_alive():  # a step stopped anywhere leaves the tables whole
            self._process.kill()
            self._process.join()
        self._here.close()


def _serve(
    root: Any, config: Any, requests: Connection, stopping: Any, parent: int
) -> None:  # pragma: no cover - runs in the child process (tests/e2e/test_stream_upkeep.py)
    """The child's loop: a pass per request, until asked to stop or the stream is gone."""
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    from digital_finance.api import Lakehouse

    lake = Lakehouse(root, config)

    def stop() -> bool:
        return bool(stopping.is_set()) or os.getppid() != parent

    while not stop():
        if not requests.poll(1.0):
            continue
        try:
            request = requests.recv()
        except EOFError:
            return
        if request is None:
            return
        try:
            requests.send(("done", lake.maintain_beside_writers(stop=stop)))
        except Exception as exc:
            requests.send(("failed", f"{type(exc).__name__}: {exc}"))
