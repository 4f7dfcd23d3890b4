"""The service's durable log: a request's records are on disk before its `202 Accepted`.

The API must not answer before the records it accepted would survive a crash, and must not
make one Delta commit per request (a commit costs tens of milliseconds, and thousands of
small files). So a request is first appended here — a local append-only log, fsynced — and
a `StreamLoop` in the same process reads the log (`log_feed.LogFeed`) and ingests it in
micro-batches. Each dataset is one partition of the stream, named after the log's own id
(`api-<log id>/<dataset>`), and every record has a stable position in it; the tables keep
the position they reached per partition and drop records a batch already holds, so after a
crash every acknowledged record reaches them exactly once.

Group commit: one writer thread takes every submission waiting, gives them positions,
writes them (one `writev` per segment file) and fsyncs each file once, then completes all
their futures — so N requests arriving together cost one fsync, not N. A future completes
only after its frame is fsynced, and the service answers only then.

Layout::

    <folder>/LOCK                           flock'ed by the one process writing the log
    <folder>/log-id                         12 hex characters naming the log's partitions
    <folder>/durable-ends                   a hint for readers in other processes (below)
    <folder>/<dataset>/<first:020d>.log     segments, named by their first record's position

A segment is a run of frames, each the records of one submission (little-endian)::

    b"DFL1" | u32 header length | u32 body length | u32 CRC-32 of header + body
    header: compact JSON {"first": position, "count": records, "at": unix time written,
            "receipt": {principal, key, body_sha256, dataset, response, at}}  (optional)
    body:   count x (u32 length | record bytes)

An `Idempotency-Key`'s receipt rides in its records' frame header, so the key is durable
exactly when the records are: never one without the other. A segment is started only once
the one before is fsynced, and its name once the folder is, so only the last segment can
end in bytes that were never acknowledged. (Linux: `flock`; segments are written with
`O_DSYNC`, so a group's write returns once it is on the disk: one system call, where a
`write` and an `fdatasync` were two, each handing the interpreter's lock back and forth
with the event loop's thread.)

Recovery (`open`) cuts off a torn tail and stops at damage: `log_recovery`.

Readers in other processes (`LogReader`, for an ingestion process) take no lock and never
write: after every group commit's fsyncs the writer publishes each dataset's durable end in
`durable-ends` — one little-endian u64 per dataset, in the writer's `datasets` order, written
by one `pwrite` at offset 0 (and once at `open`, after recovery). The file is never fsynced:
it is only a hint, and as it is written after the records are durable, a reader never sees an
end beyond them. Readers never read a record at or past the end they saw, and leave trimming
to the writer's process.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import itertools
import logging
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from digital_finance.errors import TransientError
from digital_finance.service.log_recovery import recover_segments
from digital_finance.service.log_segments import (
    ENDS_FILE,
    MAGIC,
    MAX_HEADER,
    PREFIX,
    U32,
    Cursor,
    NamedLog,
    Receipt,
    Segment,
    frame_header,
    fsync_folder,
    locate,
    lock_folder,
    read_or_create_id,
    read_spans,
    write_all,
)

__all__ = ["Appended", "DurableLog", "Receipt"]

logger = logging.getLogger(__name__)

_MAX_RECEIPT = MAX_HEADER // 2  # what `submit` takes, well inside what a reader accepts
DAY = 24 * 3600.0


@dataclass(frozen=True)
class Appended:
    """Where a submission's records went: positions `first` .. `first + count - 1`."""

    dataset: str
    first: int
    count: int


@dataclass
class _Stream:
    """One dataset's segments, its writer's state and its readers' cursor."""

    name: str
    folder: Path
    segments: list[Segment]
    # the writer thread's own
    fd: int = -1
    next: int = 0
    written: int = 0  # bytes in the current segment, synced or not
    cursor: Cursor = field(default_factory=Cursor)


# a submission: dataset, body, record count, receipt, future
class _Waiter(Protocol):
    """What the writer completes: a `concurrent.futures.Future`, or a `_LoopWaiter`."""

    def done(self) -> bool: ...
    def set_result(self, result: Appended) -> None: ...
    def set_exception(self, exception: BaseException) -> None: ...


class _LoopWaiter:
    """An event loop's wait for one submission, settled on that loop in one call per group.

    A `concurrent.futures.Future` per request costs a `Condition` and a thread-safe call
    each to hand over to asyncio (a tenth of a single-record request); these are settled
    together, and a waiter that gave up (timed out) is simply skipped.
    """

    __slots__ = ("error", "future", "loop", "result")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Appended] = loop.create_future()
        self.result: Appended | None = None
        self.error: BaseException | None = None

    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def set_result(self, result: Appended) -> None:
        self.result = result

    def set_exception(self, exception: BaseException) -> None:
        self.error = exception


def _receipt_size(receipt: Receipt) -> int:
    texts = (receipt.principal, receipt.key, receipt.response)
    return sum(len(t.encode()) for t in texts) + 200  # and the fixed fields


def _hand_over(group: list[_Item]) -> None:
    """Settle a group's loop waiters: one thread-safe call per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_LoopWaiter]] = {}
    for item in group:
        waiter = item[4]
        if isinstance(waiter, _LoopWaiter):
            by_loop.setdefault(waiter.loop, []).append(waiter)
    for loop, waiters in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, waiters)


def _settle(waiters: list[_LoopWaiter]) -> None:
    for w in waiters:
        if w.future.done():  # cancelled: its request timed out, the records are kept anyway
            continue
        if w.error is not None:
            w.future.set_exception(w.error)
        elif w.result is not None:
            w.future.set_result(w.result)


_Item = tuple[str, bytes, int, Receipt | None, _Waiter]
_STOP: Any = object()


@dataclass
class _Chunk:
    """Frames of one group commit bound for one segment file."""

    stream: _Stream
    new_first: int | None  # a segment to start first, at this position
    base: int  # bytes already in that segment
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    end: int = 0
    items: list[tuple[_Item, int]] = field(default_factory=list)  # with their first position


class DurableLog(NamedLog):
    """An append-only, fsynced log of records per dataset, with group commit.

    Example::

        with DurableLog(Path("api-log")) as log:
            appended = log.submit("stocks", [b'{"stock_id": 1}']).result()  # durable now
            log.read("stocks", appended.first, 10)  # [(position, b'{"stock_id": 1}')]
    """

    def __init__(
        self,
        folder: Path,
        datasets: Sequence[str] = ("stocks", "mutual_funds"),
        *,
        segment_bytes: int = 64 * 1024 * 1024,
        idempotency_seconds: float = DAY,
        sync: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """A log in `folder` (nothing is touched until `open`); `clock` gives unix time.
        `sync`, when given, makes a file's written bytes durable after each write (tests
        count or fail it) instead of writing the segments with `O_DSYNC`."""
        if not datasets or len(set(datasets)) != len(datasets):
            raise ValueError(f"the datasets must be distinct and at least one: {datasets!r}")
        self.folder = Path(folder)
        self.datasets = tuple(datasets)
        self.segment_bytes = segment_bytes
        self.idempotency_seconds = idempotency_seconds
        self._sync = sync
        self._write_flags = 0 if sync is not None else os.O_DSYNC
        self._clock = clock
        self._log_id: str | None = None
        self._lock_fd = -1
        self._ends_fd = -1  # `durable-ends`, written after each group commit
        self._ends_format = struct.Struct(f"<{len(self.datasets)}Q")
        self._ends_failed = False
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()  # segments, durable ends, receipts
        self._changed = threading.Condition(self._lock)  # notified when records become durable
        self._submit_lock = threading.Lock()  # so nothing is queued behind the writer's stop
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._closed = True
        self._failure: TransientError | None = None
        self._receipts: dict[tuple[str, str], Receipt] = {}
        self._receipt_order: collections.deque[Receipt] = collections.deque()

    # --- opening and closing ---------------------------------------------------------
    def open(self) -> DurableLog:
        """Lock the folder, recover every dataset's segments and start the writer."""
        if self._writer is not None:
            raise RuntimeError("the log is open already")
        self._streams, self._failure = {}, None
        self._receipts, self._receipt_order = {}, collections.deque()
        self._queue = queue.SimpleQueue()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_folder(self.folder)
        try:
            self._log_id = read_or_create_id(self.folder)
            for dataset in self.datasets:
                self._streams[dataset] = self._recover(dataset)
            self._ends_fd = os.open(
                self.folder / ENDS_FILE, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
            self._publish_ends()
        except BaseException:
            self._release()
            raise
        self._closed = False
        self._writer = threading.Thread(
            target=self._write_loop, name="digital-finance-log-writer", daemon=True
        )
        self._writer.start()
        return self

    def close(self) -> None:
        """Write what was submitted, stop the writer, release the folder."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        with self._changed:
            self._changed.notify_all()  # waiting readers see the log closed
        self._release()

    def _release(self) -> None:
        for stream in self._streams.values():
            with stream.cursor.lock:
                stream.cursor.close()
            if stream.fd >= 0:
                os.close(stream.fd)
                stream.fd = -1
        if self._ends_fd >= 0:
            os.close(self._ends_fd)
            self._ends_fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    # --- writing ---------------------------------------------------------------------
    def submit(
        self, dataset: str, values: Sequence[bytes], receipt: Receipt | None = None
    ) -> concurrent.futures.Future[Appended]:
        """Append records; the future completes once they are fsynced (or fails with a
        `TransientError` when they could not be)."""
        future: concurrent.futures.Future[Appended] = concurrent.futures.Future()
        self._enqueue(dataset, values, receipt, future)
        return future

    def append_future(
        self,
        dataset: str,
        values: Sequence[bytes],
        receipt: Receipt | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> asyncio.Future[Appended]:
        """Submit on the running loop (`loop`, if the caller has it at hand); the future is
        settled on the loop once the records are fsynced. Cancelling it does not withdraw
        them (shield it to time out a wait)."""
        waiter = _LoopWaiter(loop or asyncio.get_running_loop())
        self._enqueue(dataset, values, receipt, waiter)
        return waiter.future

    async def append(
        self, dataset: str, values: Sequence[bytes], receipt: Receipt | None = None
    ) -> Appended:
        """`submit`, awaited on the running loop. Cancelling the wait (a timeout) does not
        withdraw the records: once submitted they are written, and a retry with the same
        receipt's key finds them."""
        waiter = _LoopWaiter(asyncio.get_running_loop())
        self._enqueue(dataset, values, receipt, waiter)
        return await waiter.future

    def _enqueue(
        self, dataset: str, values: Sequence[bytes], receipt: Receipt | None, waiter: _Waiter
    ) -> None:
        if dataset not in self._streams:
            raise ValueError(f"no dataset {dataset!r} in this log: {', '.join(self.datasets)}")
        if not values:
            raise ValueError("no records to append")
        if receipt is not None and receipt.dataset != dataset:
            raise ValueError(f"a receipt for {receipt.dataset} with records of {dataset}")
        if receipt is not None and _receipt_size(receipt) > _MAX_RECEIPT:
            # a header over `MAX_HEADER` reads as damage: refused here, before it is written
            raise ValueError(f"a receipt of {_receipt_size(receipt):,} bytes is over the limit")
        # length-prefixed records, packed in C: no Python loop per record
        lengths = map(U32.pack, map(len, values))
        body = b"".join(itertools.chain.from_iterable(zip(lengths, values, strict=True)))
        with self._submit_lock:
            if self._closed:
                raise TransientError("the log is closed: the service is stopping")
            if self._failure is not None:
                raise _refused(self._failure)
            self._queue.put((dataset, body, len(values), receipt, waiter))

    @property
    def closed(self) -> bool:
        """Whether the log is closed (or not opened yet)."""
        return self._closed

    @property
    def failure(self) -> TransientError | None:
        """Why the log refuses submissions until it is reopened (None while it is well)."""
        return self._failure

    def _write_loop(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            item = get()
            group: list[_Item] = []
            stop = False
            while True:
                if item is _STOP:
                    stop = True  # nothing is queued after it (`close` holds the submit lock)
                    break
                group.append(item)
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
            if group:
                try:
                    self._commit(group)
                except BaseException as exc:  # a bug: still, no request may wait forever
                    failure = self._fail(str(self.folder), exc)
                    for item in group:
                        if not item[4].done():
                            item[4].set_exception(_refused(failure))
                _hand_over(group)
            if stop:
                return

    def _commit(self, group: list[_Item]) -> None:
        if self._failure is not None:
            for item in group:
                item[4].set_exception(_refused(self._failure))
            return
        at = self._clock()
        chunks = self._frames(group, at)
        finished: list[tuple[_Waiter, Appended]] = []
        failed_from = len(chunks)
        error: BaseException | None = None
        for number, chunk in enumerate(chunks):
            stream = chunk.stream
            try:
                if chunk.new_first is not None:
                    self._start_segment(stream, chunk.new_first)
                write_all(stream.fd, chunk.parts)
                stream.written += chunk.size
                if self._sync is not None:
                    self._sync(stream.fd)
            except Exception as exc:
                failed_from, error = number, exc
                break
            with self._changed:
                segment = stream.segments[-1]
                segment.size, segment.end, segment.newest = stream.written, chunk.end, at
                for (_, _, _, receipt, _), _ in chunk.items:
                    if receipt is not None:
                        self._remember(receipt)
                self._changed.notify_all()
            name = stream.name
            finished.extend((it[4], Appended(name, first, it[2])) for it, first in chunk.items)
        if finished:  # before the answers: a reader elsewhere sees what a client was told
            self._publish_ends()
        if error is not None:
            failure = self._fail(str(chunks[failed_from].stream.segments[-1].path), error)
            for chunk in chunks[failed_from:]:
                for item, _ in chunk.items:
                    item[4].set_exception(_refused(failure))
        for future, appended in finished:
            future.set_result(appended)

    def _frames(self, group: list[_Item], at: float) -> list[_Chunk]:
        """Give the submissions positions in order and frame them, per segment file."""
        chunks: list[_Chunk] = []
        current: dict[str, _Chunk] = {}
        limit = self.segment_bytes
        for item in group:
            dataset, body, count, receipt, _ = item
            stream = self._streams[dataset]
            first = stream.next
            header = frame_header(first, count, at, receipt)
            size = PREFIX.size + len(header) + len(body)
            chunk = current.get(dataset)
            filled = chunk.base + chunk.size if chunk else stream.written
            if filled > 0 and filled + size > limit:
                chunk = _Chunk(stream, first, 0)
            elif chunk is None:
                chunk = _Chunk(stream, None, stream.written)
            if current.get(dataset) is not chunk:
                current[dataset] = chunk
                chunks.append(chunk)
            crc = zlib.crc32(body, zlib.crc32(header))
            chunk.parts += (PREFIX.pack(MAGIC, len(header), len(body), crc), header, body)
            chunk.size += size
            stream.next = chunk.end = first + count
            chunk.items.append((item, first))
        return chunks

    def _start_segment(self, stream: _Stream, first: int) -> None:
        path = stream.folder / f"{first:020d}.log"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(path, flags | self._write_flags, 0o644)
        os.close(stream.fd)  # its frames are fsynced: a segment is started after them
        stream.fd, stream.written = fd, 0
        fsync_folder(stream.folder)  # the new name must survive a crash as its bytes will
        with self._lock:
            stream.segments.append(Segment(first, path, first, 0, 0.0))

    def _publish_ends(self) -> None:
        """Write every dataset's durable end to `durable-ends` for readers elsewhere: one
        `pwrite`, never fsynced (a hint; after a crash `open` writes it again)."""
        streams = self._streams
        ends = [streams[d].segments[-1].end for d in self.datasets]
        try:
            os.pwrite(self._ends_fd, self._ends_format.pack(*ends), 0)
        except OSError as exc:  # the records are durable: only readers elsewhere lag
            if not self._ends_failed:
                logger.warning("%s: durable ends not published: %s", self.folder / ENDS_FILE, exc)
            self._ends_failed = True
        else:
            self._ends_failed = False

    def _fail(self, where: str, error: BaseException) -> TransientError:
        # After a failed fsync the kernel may have dropped the dirty pages and marked them
        # clean, so a later fsync can succeed without the bytes ever reaching the disk
        # (PostgreSQL's "fsyncgate", 2018): nothing written since can be trusted. The log
        # refuses everything until it is reopened, which rereads what the disk holds.
        failure = TransientError(
            f"the durable log could not write or fsync {where} ({error}); it refuses records "
            "until the service restarts"
        )
        failure.__cause__ = error
        self._failure = failure
        logger.error("%s", failure)
        return failure

    def _remember(self, receipt: Receipt) -> None:
        """Index a receipt (under `_lock`); the first durable one of a key is the answer."""
        key = (receipt.principal, receipt.key)
        if key not in self._receipts:
            self._receipts[key] = receipt
            self._receipt_order.append(receipt)

    # --- reading ---------------------------------------------------------------------
    def durable_end(self, dataset: str) -> int:
        """The position after the dataset's last durable record."""
        stream = self._stream(dataset)
        with self._lock:
            return stream.segments[-1].end

    def first_position(self, dataset: str) -> int:
        """The position of the dataset's first record the log still holds."""
        stream = self._stream(dataset)
        with self._lock:
            return stream.segments[0].first

    def wait_durable(self, ends: dict[str, int] | None, timeout: float) -> bool:
        """Wait until some dataset of `ends` (dataset -> position read to; None: the durable
        ends now) has durable records beyond it; False on timeout or when the log closes."""
        streams = self._streams
        with self._changed:
            if ends is None:
                ends = {d: s.segments[-1].end for d, s in streams.items()}
            watched = [(streams[d], end) for d, end in ends.items() if d in streams]

            def beyond() -> bool:
                return any(s.segments[-1].end > end for s, end in watched)

            self._changed.wait_for(lambda: self._closed or beyond(), timeout)
            return beyond()

    def read(self, dataset: str, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Durable records at positions ≥ `start`, at most `limit`, in order."""
        stream = self._stream(dataset)
        if limit <= 0:
            return []
        with stream.cursor.lock:
            with self._lock:
                segments = stream.segments
                end = segments[-1].end
                if start >= end:
                    return []
                index = locate(segments, start, dataset, self.folder)
                # sizes as durable now: what is written after may not be synced yet
                spans = [(s.first, s.path, s.size) for s in segments[index:]]
            return read_spans(stream.cursor, spans, start, limit, end)

    # --- idempotency receipts --------------------------------------------------------
    def receipt(self, principal: str, key: str) -> Receipt | None:
        """The answer stored for this caller's `Idempotency-Key`, while it is remembered."""
        with self._lock:
            found = self._receipts.get((principal, key))
        if found is None or found.at < self._clock() - self.idempotency_seconds:
            return None
        return found

    # --- retention -------------------------------------------------------------------
    def trim(self, positions: dict[str, int]) -> int:
        """Delete segments all of whose records the tables hold (`positions`: dataset ->
        position reached) and that are older than the idempotency window, so a retried
        request's key is still found; never a dataset's last segment. How many went."""
        horizon = self._clock() - self.idempotency_seconds
        deleted = 0
        for dataset, position in positions.items():
            stream = self._streams.get(dataset)
            if stream is None:
                continue
            with stream.cursor.lock:
                with self._lock:
                    gone: list[Segment] = []
                    segments = stream.segments
                    while (
                        len(segments) > 1
                        and segments[0].end <= position
                        and segments[0].newest < horizon
                    ):
                        gone.append(segments.pop(0))
                if not gone:
                    continue
                stream.cursor.forget(gone[-1].first)
                for segment in gone:
                    segment.path.unlink(missing_ok=True)
                fsync_folder(stream.folder)
                deleted += len(gone)
                logger.info(
                    "log %s: removed %d segment(s) below position %d",
                    dataset,
                    len(gone),
                    gone[-1].end,
                )
        with self._lock:
            order = self._receipt_order
            while order and order[0].at < horizon:
                old = order.popleft()
                key = (old.principal, old.key)
                if self._receipts.get(key) is old:
                    del self._receipts[key]
        return deleted

    def backlog(self, positions: dict[str, int]) -> dict[str, int]:
        """Per dataset, records durable here and not yet in the tables (`positions`: dataset
        -> position reached; a dataset missing from it counts from the log's first record)."""
        with self._lock:
            return {
                name: s.segments[-1].end - positions.get(name, s.segments[0].first)
                for name, s in self._streams.items()
            }

    def size_bytes(self) -> int:
        """The durable bytes of every segment kept."""
        with self._lock:
            return sum(seg.size for s in self._streams.values() for seg in s.segments)

    # --- recovery --------------------------------------------------------------------
    def _recover(self, dataset: str) -> _Stream:
        folder = self.folder / dataset
        horizon = self._clock() - self.idempotency_seconds
        segments = recover_segments(folder, horizon, self._remember)
        stream = _Stream(dataset, folder, segments)
        current = segments[-1]
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | self._write_flags
        stream.fd = os.open(current.path, flags)
        stream.next, stream.written = current.end, current.size
        return stream

    def _stream(self, dataset: str) -> _Stream:
        try:
            return self._streams[dataset]
        except KeyError:
            raise ValueError(
                f"no dataset {dataset!r} in this log (open: {bool(self._streams)}); "
                f"the datasets are {', '.join(self.datasets)}"
            ) from None


def _refused(failure: TransientError) -> TransientError:
    """A fresh error per refusal: one instance raised in many threads mixes tracebacks."""
    refused = TransientError(str(failure))
    refused.__cause__ = failure.__cause__
    return refused
