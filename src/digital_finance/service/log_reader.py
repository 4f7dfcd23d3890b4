"""A read-only view of the service's durable log, for the ingester's own process.

The writer (`durable_log.DurableLog`) owns the folder: its lock, its segments, its trims.
A reader takes no lock; it reads the segments up to the ends the writer publishes after
each fsync (`durable-ends`), so it never hands on a record that was not durable, and it
finds new segments as the writer rolls over and tolerates the ones the writer trimmed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from digital_finance.errors import TerminalError
from digital_finance.service.log_segments import (
    ENDS_FILE,
    U64,
    Cursor,
    NamedLog,
    Segment,
    locate,
    read_id,
    read_spans,
    segment_firsts,
)

__all__ = ["LogReader"]


class LogReader(NamedLog):
    """A read-only view of a log folder that a `DurableLog` in another process writes.

    It takes no lock and writes nothing: it reads the durable ends the writer publishes in
    `durable-ends`, never a record at or past them, and finds the segments the writer starts
    and deletes. `trim` only remembers the positions (`committed`): the writer's process
    trims when they are reported to it. The datasets must be the writer's, in its order.

    Example::

        with LogReader(Path("api-log")) as reader:
            if reader.wait_durable({"stocks": 0}, timeout=1.0):
                reader.read("stocks", 0, 10)  # [(0, b'{"stock_id": 1}'), ...]
    """

    def __init__(
        self,
        folder: Path,
        datasets: Sequence[str] = ("stocks", "mutual_funds"),
        *,
        poll_seconds: float = 0.005,
    ) -> None:
        """A reader of `folder` (nothing is touched until `open`); `wait_durable` looks at
        the published ends every `poll_seconds`."""
        if not datasets or len(set(datasets)) != len(datasets):
            raise ValueError(f"the datasets must be distinct and at least one: {datasets!r}")
        self.folder = Path(folder)
        self.datasets = tuple(datasets)
        self.poll_seconds = poll_seconds
        self._log_id: str | None = None
        self._ends_fd = -1
        # held while the ends file is read or closed: a `close` from another thread during a
        # read would hand `pread` a closed descriptor, or one the process has opened again
        self._ends_lock = threading.Lock()
        self._segments: dict[str, list[Segment]] = {}  # as last listed: sizes unknown (-1)
        self._cursors: dict[str, Cursor] = {}
        self._committed: dict[str, int] = {}
        self._stopped = threading.Event()  # set while closed: wakes `wait_durable`
        self._stopped.set()

    # --- opening and closing ---------------------------------------------------------
    def open(self) -> LogReader:
        """Read the log's id and look at its segments; an error when there is no log."""
        if not self._stopped.is_set():
            raise RuntimeError("the log reader is open already")
        log_id = read_id(self.folder) if self.folder.is_dir() else None
        if log_id is None:
            raise TerminalError(
                f"no durable log in {self.folder} (no log-id): the service creates it when it "
                "starts; start `digital-finance serve` with this log folder first"
            )
        self._log_id = log_id
        self._segments = {d: [] for d in self.datasets}
        self._cursors = {d: Cursor() for d in self.datasets}
        self._committed = {}
        self._ends_fd = -1
        self._open_ends()
        self._stopped.clear()
        return self

    def close(self) -> None:
        """Let go of the open files; a `wait_durable` in progress returns False."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for cursor in self._cursors.values():
            with cursor.lock:
                cursor.close()
        with self._ends_lock:
            if self._ends_fd >= 0:
                os.close(self._ends_fd)
                self._ends_fd = -1

    @property
    def closed(self) -> bool:
        """Whether the reader is closed (or not opened yet)."""
        return self._stopped.is_set()

    # --- durable ends ----------------------------------------------------------------
    def durable_end(self, dataset: str) -> int:
        """The position after the dataset's last durable record, as the writer published
        it (0 while it has published none)."""
        return self._ends()[self._index(dataset)]

    def first_position(self, dataset: str) -> int:
        """The position of the dataset's first record the log still holds."""
        self._index(dataset)
        segments = self._list(dataset)
        return segments[0].first if segments else 0

    def wait_durable(self, ends: dict[str, int] | None, timeout: float) -> bool:
        """Wait until some dataset of `ends` (dataset -> position read to; None: the durable
        ends now) has durable records beyond it, looking every `poll_seconds`; False on
        timeout or when the reader closes."""
        deadline = time.monotonic() + timeout
        index = {d: i for i, d in enumerate(self.datasets)}
        if ends is None:
            now = self._ends()
            ends = {d: now[i] for d, i in index.items()}
        watched = [(index[d], end) for d, end in ends.items() if d in index]
        while True:
            if self.closed:
                return False
            now = self._ends()
            if any(now[i] > end for i, end in watched):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._stopped.wait(min(self.poll_seconds, left))

    def _ends(self) -> list[int]:
        """The published ends, one per dataset (0 where unknown). Read twice and the lesser
        kept: a read racing the writer's `pwrite` could mix old and new bytes."""
        n = len(self.datasets)
        with self._ends_lock:
            if self.closed or (self._ends_fd < 0 and not self._open_ends()):
                return [0] * n
            one = os.pread(self._ends_fd, 8 * n, 0)
            two = os.pread(self._ends_fd, 8 * n, 0)
        ends = [0] * n
        for i in range(min(len(one), len(two)) // 8):
            ends[i] = min(U64.unpack_from(one, 8 * i)[0], U64.unpack_from(two, 8 * i)[0])
        return ends

    def _open_ends(self) -> bool:
        try:
            self._ends_fd = os.open(self.folder / ENDS_FILE, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # a writer that has not finished opening
            return False
        return True

    # --- reading ---------------------------------------------------------------------
    def read(self, dataset: str, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Durable records at positions ≥ `start`, at most `limit`, in order: only those
        below the published end, and only those the segments hold."""
        self._index(dataset)
        if limit <= 0 or self.closed:
            return []
        cursor = self._cursors[dataset]
        end = self.durable_end(dataset)
        out: list[tuple[int, bytes]] = []
        with cursor.lock:
            fresh = False  # whether the segments were just listed
            while True:
                at = out[-1][0] + 1 if out else start
                if len(out) >= limit or at >= end:
                    return out
                segments = self._segments[dataset] if not fresh else self._list(dataset)
                if not segments:
                    segments = self._list(dataset)
                index = locate(segments, at, dataset, self.folder)
                spans = [(s.first, s.path, -1) for s in segments[index:]]
                try:
                    got = read_spans(cursor, spans, at, limit - len(out), end)
                except FileNotFoundError:  # trimmed by the writer since the last listing
                    got = []
                if got:
                    out += got
                    fresh = False
                elif fresh:  # listed just now, and nothing more: the segments hold no more
                    return out
                else:  # the writer may have started a segment, or trimmed some
                    fresh = True

    def _list(self, dataset: str) -> list[Segment]:
        """List the dataset's segments again (the writer starts and deletes them)."""
        folder = self.folder / dataset
        try:
            firsts = segment_firsts(folder)
        except FileNotFoundError:
            firsts = []
        segments = [Segment(f, folder / f"{f:020d}.log", -1, -1, 0.0) for f in firsts]
        self._segments[dataset] = segments
        if segments:
            self._cursors[dataset].forget(segments[0].first - 1)
        return segments

    def _index(self, dataset: str) -> int:
        try:
            return self.datasets.index(dataset)
        except ValueError:
            raise ValueError(
                f"no dataset {dataset!r} in this log: {', '.join(self.datasets)}"
            ) from None

    # --- retention -------------------------------------------------------------------
    @property
    def committed(self) -> dict[str, int]:
        """The positions `trim` was given (dataset -> position the tables reached), for
        the writer's process to trim with."""
        return dict(self._committed)

    def trim(self, positions: dict[str, int]) -> int:
        """Remember the positions the tables reached; deletes nothing (the writer's process
        owns the files), so 0."""
        for dataset, position in positions.items():
            if dataset in self.datasets and position > self._committed.get(dataset, -1):
                self._committed[dataset] = position
        return 0


# --- frames ----------------------------------------------------------------------------
