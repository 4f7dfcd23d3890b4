"""Moves the durable log into the lakehouse: the stream loop, on a thread of the service.

The log is one more source with positions (`service.log_feed`): the loop cuts it into
micro-batches and ingests each exactly once, so the records of many requests make one
Delta commit per table, never one per request. A batch that fails (the storage is away, a
commit conflict that outlasted its retries, a `fail` rule) stops this loop, not the
service: requests are still made durable, `/readyz` reports the error, and the loop starts
again after a pause that doubles up to a minute — from the positions in the tables, so
nothing is lost or doubled by the restart.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from digital_finance.api import Lakehouse
from digital_finance.service.durable_log import DurableLog
from digital_finance.service.log_feed import LogFeed
from digital_finance.service.metrics import ServiceMetrics
from digital_finance.streaming.loop import StreamLoop, StreamOptions

log = logging.getLogger(__name__)

KIND = "api"
MAX_PAUSE = 60.0
BACKLOG_EVERY = 5.0  # seconds between backlog gauges: each reads the batch history


@dataclass
class IngestState:
    """What `/readyz` and `/metrics` read of the ingester."""

    running: bool = False
    batches: int = 0
    records: int = 0
    error: str | None = None  # the last batch's failure, until a batch succeeds again
    failures: int = 0


class Ingester:
    """A thread running the stream loop over the log until stopped."""

    def __init__(
        self,
        lake: Lakehouse,
        durable: DurableLog,
        options: StreamOptions,
        metrics: ServiceMetrics,
    ) -> None:
        self.lake = lake
        self.durable = durable
        self.options = options
        self.metrics = metrics
        self.state = IngestState()
        self._stop = threading.Event()
        self._measured = 0.0
        self._thread = threading.Thread(target=self._run, name="ingester", daemon=True)

    def start(self) -> None:
        """Begin ingesting."""
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the batch under way commits (what is left stays in the log)."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        pause = 1.0
        while not self._stop.is_set():
            before = self.state.batches
            loop = StreamLoop(
                self.lake,
                KIND,
                lambda _lake: LogFeed(self.durable),
                self.options,
                on_batch=self._committed,
                metrics=self.metrics.stream,
            )
            self.state.running = True
            try:
                loop.run(self._stop.is_set)
                return
            except Exception as exc:  # any failure: report, pause, start again
                self.state.error = f"{type(exc).__name__}: {exc}"
                self.state.failures += 1
                log.error("ingesting the log failed (retrying in %.0f s): %s", pause, exc)
            finally:
                self.state.running = False
            if self.state.batches > before:
                pause = 1.0  # it worked for a while: a new failure starts the pauses over
            self._stop.wait(pause)
            pause = min(MAX_PAUSE, pause * 2)

    def _committed(self, report: object, held: int, seconds: float) -> None:
        from digital_finance.runs.report import RunReport

        assert isinstance(report, RunReport)
        for batch in report.batches:
            self.state.batches += 1
            self.state.records += sum(batch.records.values())
        self.state.error = None
        now = time.monotonic()
        if now - self._measured >= BACKLOG_EVERY:
            self._measured = now
            self._backlog()

    def _backlog(self) -> None:
        positions = self.lake.stream_positions(KIND)
        at = {d: positions.get(self.durable.partition(d), 0) for d in self.durable.datasets}
        for dataset, behind in self.durable.backlog(at).items():
            self.metrics.backlog.labels(dataset).set(behind)
        self.metrics.log_bytes.set(self.durable.size_bytes())

    @property
    def alive(self) -> bool:
        """Whether the thread is still there (it only ends when stopped)."""
        return self._thread.is_alive()
