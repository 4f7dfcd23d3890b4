"""The service's durable log as a stream feed: what `StreamLoop` ingests into the tables.

The feed reads either the `DurableLog` itself (ingestion in the service's process) or a
`log_reader.LogReader` of its folder (ingestion in a process of its own): both are a `LogSource`.

Each dataset of the log is one partition (`api-<log id>/<dataset>`), and a record's log
position is its stream position. The feed starts each partition where the tables stand, so
after a crash the records durable in the log but not yet committed are read again and the
ones a batch already holds are dropped by the intake: every acknowledged record reaches the
tables once. A log that cannot be where the tables say it is — behind them (the folder was
replaced) or trimmed past them (records are gone) — stops the stream rather than guess.

Committed positions let the log delete old segments (`DurableLog.trim`), now and then
rather than after every batch: a trim lists and fsyncs folders. A `LogReader` deletes
nothing: it keeps the positions for the writer's process to trim with.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from digital_finance.errors import TerminalError, TransientError
from digital_finance.sources.stream_records import coded_records
from digital_finance.streaming.feed import Positions

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["LogFeed", "LogSource"]

logger = logging.getLogger(__name__)

TRIM_EVERY_SECONDS = 10.0


class LogSource(Protocol):
    """What the feed reads: a `DurableLog`, or a `LogReader` of one in another process."""

    @property
    def folder(self) -> Path: ...
    @property
    def datasets(self) -> tuple[str, ...]: ...
    @property
    def closed(self) -> bool: ...
    def partition(self, dataset: str) -> str: ...
    def dataset_of(self, partition: str) -> str | None: ...
    def first_position(self, dataset: str) -> int: ...
    def durable_end(self, dataset: str) -> int: ...
    def wait_durable(self, ends: dict[str, int] | None, timeout: float) -> bool: ...
    def read(self, dataset: str, start: int, limit: int) -> list[tuple[int, bytes]]: ...
    def trim(self, positions: dict[str, int]) -> int: ...


class LogFeed:
    """Reads a log the service owns, or a reader of it (neither opened nor closed here)."""

    kind = "api"

    def __init__(
        self,
        log: LogSource,
        *,
        trim_every_seconds: float = TRIM_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.trim_every_seconds = trim_every_seconds
        self._clock = clock
        self._partitions = {dataset: log.partition(dataset) for dataset in log.datasets}
        self._cursors: dict[str, int] = {}  # dataset -> the next position to read
        self._committed: dict[str, int] = {}  # dataset -> the position the tables reached
        self._turn = 0
        self._trimmed = clock()

    # --- Feed ------------------------------------------------------------------------
    def start(self, positions: Positions) -> None:
        reached = positions()  # partitions of other (older) logs may be there: not ours
        for dataset, partition in self._partitions.items():
            first = self.log.first_position(dataset)
            end = self.log.durable_end(dataset)
            at = reached.get(partition)
            if at is None:
                at = first  # new to the tables: all the log holds
            elif at > end:
                raise TerminalError(
                    f"the lakehouse holds {partition} up to position {at}, but the log in "
                    f"{self.log.folder} ends at {end}: the log folder does not match the "
                    "lakehouse (was it deleted, replaced or restored from an older copy?)"
                )
            elif at < first:
                raise TerminalError(
                    f"the lakehouse holds {partition} up to position {at}, but the log in "
                    f"{self.log.folder} begins at {first}: records {at} to {first - 1} are "
                    "no longer in the log (was the lakehouse restored from an older copy?)"
                )
            self._cursors[dataset] = at
            self._committed[dataset] = at
        shown = ", ".join(f"{self._partitions[d]}@{p}" for d, p in self._cursors.items())
        logger.info("reading the log %s from %s", self.log.folder, shown)

    def poll(self, timeout: float, limit: int) -> pa.Table:
        got = self._take(limit)
        if got.num_rows or timeout <= 0 or not self._cursors:
            return got
        # a `DurableLog`'s writer notifies its condition; a `LogReader` polls a small file
        if self.log.wait_durable(dict(self._cursors), timeout):
            return self._take(limit)
        if self.log.closed:  # else every poll would return at once: a busy loop
            raise TransientError(f"the log {self.log.folder} was closed under its stream")
        return got

    def revoked(self) -> set[str]:
        return set()  # one process owns the log (its folder lock): nothing is taken away

    def caught_up(self) -> bool:
        log = self.log
        return bool(self._cursors) and all(
            at >= log.durable_end(dataset) for dataset, at in self._cursors.items()
        )

    def assigned(self) -> bool:
        return True

    def done(self, ends: dict[str, int]) -> None:
        for partition, end in ends.items():
            dataset = self.log.dataset_of(partition)
            if dataset is not None and end > self._committed.get(dataset, 0):
                self._committed[dataset] = end
        now = self._clock()
        if now - self._trimmed < self.trim_every_seconds:
            return
        self._trimmed = now
        try:
            self.log.trim(dict(self._committed))
        except OSError as exc:  # space is reclaimed at the next trim: never fail a batch
            logger.warning("the log %s was not trimmed: %s", self.log.folder, exc)

    def high_watermarks(self) -> dict[str, int] | None:
        return {p: self.log.durable_end(d) for d, p in self._partitions.items()}

    def close(self) -> None:
        """Nothing to let go: the service closes the log after the loop stops."""

    # --- reading ---------------------------------------------------------------------
    def _take(self, limit: int) -> pa.Table:
        """Up to `limit` records, shared among the datasets that have some, so a busy
        dataset never starves a quiet one; whose turn is first rotates."""
        log, cursors = self.log, self._cursors
        order = list(cursors)
        if len(order) > 1:
            self._turn = (self._turn + 1) % len(order)
            order = order[self._turn :] + order[: self._turn]
        waiting = [d for d in order if log.durable_end(d) > cursors[d]]
        names: list[tuple[str, str]] = []
        codes: list[int] = []
        positions: list[int] = []
        values: list[bytes] = []
        while waiting and len(values) < limit:
            more = []  # those that filled their share may have more: they share what is left
            for number, dataset in enumerate(waiting):
                room = limit - len(values)
                if room <= 0:
                    break
                share = -(-room // (len(waiting) - number))
                records = log.read(dataset, cursors[dataset], share)
                if records:
                    cursors[dataset] = records[-1][0] + 1
                    codes += [len(names)] * len(records)
                    names.append((dataset, self._partitions[dataset]))
                    positions += [p for p, _ in records]
                    values += [value for _, value in records]
                if len(records) == share:
                    more.append(dataset)
            waiting = more
        return coded_records(names, codes, positions, values)
