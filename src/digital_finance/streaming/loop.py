"""The micro-batch loop: hold what the feed gives for one trigger interval, commit it, repeat.

Batches close on a fixed cadence, as Spark's processing-time trigger starts them: every
trigger interval after the stream's start, with anything held; a batch whose commit took
longer than the interval is followed by one that closes as soon as it holds a record. A
batch also closes when it holds `max_batch_records`. (Timing the interval from the end of
the last commit instead made every record wait for the commit before it, too.) `once`
reads every partition to the end it had when the stream started (Spark's `availableNow`),
commits, and returns. A stop request (SIGTERM,
Ctrl-C) ends the loop after the batch under way is committed.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from digital_finance.api import Lakehouse
from digital_finance.errors import TerminalError
from digital_finance.runs.report import RunReport
from digital_finance.sources.stream_records import records_table
from digital_finance.streaming.feed import Feed, Held
from digital_finance.streaming.metrics import StreamMetrics
from digital_finance.streaming.upkeep import Upkeep

if TYPE_CHECKING:
    from digital_finance.lakehouse.maintenance import MaintenanceReport

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2  # the longest a poll waits, so a stop request is seen at once


@dataclass(frozen=True)
class StreamOptions:
    """How micro-batches are cut."""

    trigger_seconds: float = 1.0
    max_batch_records: int = 50_000
    once: bool = False
    assign_timeout: float = 60.0  # with `once`: how long to wait for any partition
    settle_seconds: float = 1.0  # landing folder: a file untouched this long is complete
    maintain_every_seconds: float = 60.0  # table maintenance beside the batches; 0: never


@dataclass
class StreamTotals:
    """What a stream did, for its last line."""

    batches: int = 0
    records: int = 0
    dropped: int = 0  # held records of partitions taken away, read again by their new owner


class StreamLoop:
    """Feeds one lakehouse from one feed."""

    def __init__(
        self,
        lake: Lakehouse,
        kind: str,
        open_feed: Callable[[Lakehouse], Feed],
        options: StreamOptions,
        on_batch: Callable[[RunReport, int, float], None] | None = None,
        metrics: StreamMetrics | None = None,
        on_maintained: Callable[[MaintenanceReport], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lake = lake
        self.kind = kind
        # opened once unfinished batches are done: MQTT's learns from bronze what it may be
        # delivered again
        self.open_feed = open_feed
        self.options = options
        self.on_batch = on_batch
        self.metrics = metrics
        self.totals = StreamTotals()
        self.upkeep = Upkeep(lake, options.maintain_every_seconds, on_maintained)
        self._first_arrival = 0.0  # when the batch being collected got its first record
        self.clock = clock
        self._anchor: float | None = None  # when the cadence started (the first collect)
        self._close_at = math.inf  # when the batch being collected closes

    def run(self, stop: Callable[[], bool]) -> StreamTotals:
        """Micro-batches until `stop()` says so (or, with `once`, until caught up)."""
        kind = self.kind
        # a batch a killed writer left is finished before any position is read
        self._committed(self.lake.ingest_stream(kind, records_table([])), 0, 0.0)
        self.feed = self.open_feed(self.lake)
        started = time.monotonic()
        if not self.options.once:  # a `--once` run from cron is kept by `maintain` instead
            self.upkeep.start()
        try:
            self.feed.start(lambda: self.lake.stream_positions(kind))
            while not stop():
                held = self._collect(stop)
                if len(held):
                    clock = self.clock()
                    try:
                        report = self.lake.ingest_stream(kind, held.table())
                    except Exception:
                        if self.metrics is not None:
                            self.metrics.failed()
                        raise
                    self.feed.done(held.ends())
                    now = self.clock()
                    self._committed(report, len(held), now - clock)
                    _settle_heap()
                    if self.metrics is not None:
                        self.metrics.batch(report, now - clock, now - self._first_arrival)
                        self.metrics.positions(
                            self.lake.stream_positions(kind), self.feed.high_watermarks()
                        )
                if self.options.once:
                    if self.feed.caught_up() and not self.feed.revoked():
                        break
                    if not self.feed.assigned() and time.monotonic() - started > (
                        self.options.assign_timeout
                    ):
                        raise TerminalError(
                            f"no partition was assigned within {self.options.assign_timeout:.0f}"
                            " s: do the topics exist, and is the broker reachable?"
                        )
        finally:
            self.upkeep.close()
            self.feed.close()
        return self.totals

    def _collect(self, stop: Callable[[], bool]) -> Held:
        held = Held()
        # `--once` takes what is there in batches as large as allowed, as Spark's
        # availableNow does: the trigger paces a running stream, it does not cut a backlog
        trigger = math.inf if self.options.once else self.options.trigger_seconds
        if self._anchor is None:
            self._anchor = self.clock()
            self._close_at = self._beat_after(self._anchor, trigger)
        limit = self.options.max_batch_records
        while len(held) < limit and not stop():
            remaining = self._close_at - self.clock()
            if remaining <= 0 and len(held):
                break
            got = self.feed.poll(max(0.0, min(POLL_SECONDS, remaining)), limit - len(held))
            self._drop(held)
            if got.num_rows and not len(held):
                self._first_arrival = self.clock()
            held.add(got)
            if self.options.once and self.feed.caught_up():
                break
            if remaining <= 0 and not got.num_rows:  # nothing came: wait for the next beat
                self._close_at = self._beat_after(self.clock(), trigger)
        self._drop(held)
        # the next batch closes on the first beat after this one closed: if this batch's
        # commit outlasts it, as soon as the next holds a record
        self._close_at = self._beat_after(self.clock(), trigger)
        return held

    def _beat_after(self, moment: float, trigger: float) -> float:
        """The first time on the cadence (the stream's start plus whole intervals) after
        `moment`."""
        if math.isinf(trigger) or self._anchor is None:
            return math.inf
        return self._anchor + trigger * (math.floor((moment - self._anchor) / trigger) + 1)

    def _drop(self, held: Held) -> None:
        gone = held.drop(self.feed.revoked())
        self.totals.dropped += gone
        if gone and self.metrics is not None:
            self.metrics.dropped.inc(gone)

    def _committed(self, report: RunReport, held: int, seconds: float) -> None:
        committed(self.totals, self.on_batch, report, held, seconds)


OnBatch = Callable[[RunReport, int, float], None]


class Counts(Protocol):
    """A stream's running totals (`StreamTotals`, the Spark stream's)."""

    batches: int
    records: int


def committed(
    totals: Counts, on_batch: OnBatch | None, report: RunReport, held: int, seconds: float
) -> None:
    """Count a hand-over's batches and tell `on_batch` (every stream loop, either engine)."""
    for batch in report.batches:
        totals.batches += 1
        totals.records += sum(batch.records.values())
    if on_batch is not None and (report.batches or held):
        on_batch(report, held, seconds)


_heap_settled = False


def _settle_heap() -> None:
    """Once the first batch has loaded what a batch needs (modules, engines, caches), move
    every object alive to the collector's permanent generation (`gc.freeze`): the garbage
    collector's full collections walk every tracked object, and a long-running stream would
    otherwise walk those hundreds of thousands at each of them. Once per process."""
    global _heap_settled
    if _heap_settled:
        return
    _heap_settled = True
    gc.collect()
    gc.freeze()
