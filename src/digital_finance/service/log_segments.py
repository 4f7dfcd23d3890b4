"""The files of a durable log's folder: segments of frames, read and written.

`durable_log.DurableLog` (the service's one writer) and `log_reader.LogReader` (a reader in
another process) share this: the frame format (`durable_log`'s docstring describes it), the
segment files and their names, the folder's lock and its log id, and the reading of a
run of positions from a dataset's segments, each frame checked against its CRC.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import os
import re
import secrets
import struct
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self

from digital_finance.errors import TerminalError

MAGIC = b"DFL1"
PREFIX = struct.Struct("<4sIII")  # magic, header length, body length, CRC-32
U32 = struct.Struct("<I")
SEGMENT_NAME = re.compile(r"^(\d{20})\.log$")
LOG_ID = re.compile(r"^[0-9a-f]{12}$")
# a header without a receipt, as `frame_header` writes it: read without the json module
PLAIN_HEADER = re.compile(rb'\{"first":(\d+),"count":(\d+),"at":([-+.0-9eE]+)\}')
READ_CHUNK = 1 << 20  # one pread serves many small frames
MAX_HEADER = 1 << 20  # a header is positions and a receipt: anything longer is damage
IOV_MAX = 1024  # Linux's limit on buffers per writev
ENDS_FILE = "durable-ends"
U64 = struct.Struct("<Q")  # a position in the durable-ends hint


@dataclass(frozen=True)
class Receipt:
    """The answer to a request with an `Idempotency-Key`, kept with its records."""

    principal: str
    key: str
    body_sha256: str
    dataset: str
    response: str  # the JSON the service answered
    at: float  # unix time


@dataclass
class Segment:
    first: int
    path: Path
    end: int  # the position after its last durable record
    size: int  # durable bytes: readers never go past them
    newest: float  # when its newest frame was written (0 when it has none)


@dataclass
class Cursor:
    """Where sequential reads of one dataset stand, and the segment file they have open."""

    lock: threading.Lock = field(default_factory=threading.Lock)  # one read at a time
    at: tuple[int, int, int] | None = None  # segment first, byte offset, position there
    file: SegmentFile | None = None
    file_first: int = -1  # the segment `file` reads

    def forget(self, below: int) -> None:
        """Drop the open file and place of segments starting at or below `below` (trimmed)."""
        if self.file_first <= below:
            self.close()
        if self.at is not None and self.at[0] <= below:
            self.at = None

    def close(self) -> None:
        if self.file is not None:
            os.close(self.file.fd)
            self.file, self.file_first = None, -1


class NamedLog(ABC):
    """What the writer and a reader share: the names of a log's partitions
    (`api-<log id>/<dataset>`), and `with` around `open` and `close`."""

    datasets: tuple[str, ...]
    _log_id: str | None

    @abstractmethod
    def open(self) -> Self:
        """Open the log folder."""

    @abstractmethod
    def close(self) -> None:
        """Close it."""

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def log_id(self) -> str:
        """The log's 12 hex characters, kept in `log-id`: a new log folder gets new ones."""
        if self._log_id is None:
            raise RuntimeError("the log is not open")
        return self._log_id

    def partition(self, dataset: str) -> str:
        """The stream partition of a dataset's records in the tables."""
        return f"api-{self.log_id}/{dataset}"

    def dataset_of(self, partition: str) -> str | None:
        """The dataset of one of this log's partitions; None for any other partition."""
        head, _, dataset = partition.partition("/")
        if head == f"api-{self.log_id}" and dataset in self.datasets:
            return dataset
        return None


class BadFrame(Exception):
    """No whole, intact frame where one was expected."""


class SegmentFile:
    """A segment read through a buffer: one `pread` serves many small frames. `size` bounds
    every read, so bytes not yet fsynced are never seen."""

    def __init__(self, fd: int, size: int, data: bytes = b"") -> None:
        self.fd = fd
        self.size = size
        self.buf = data
        self.at = 0  # the file offset of buf[0]

    def get(self, offset: int, n: int) -> int:
        """Make `n` bytes at `offset` available; their index in `buf`, -1 past the end."""
        rel = offset - self.at
        if rel >= 0 and rel + n <= len(self.buf):
            return rel
        if offset + n > self.size or self.fd < 0:
            return -1
        self.buf = os.pread(self.fd, max(n, min(READ_CHUNK, self.size - offset)), offset)
        self.at = offset
        return 0 if len(self.buf) >= n else -1


class Frame(NamedTuple):  # a tuple: a log of single-record frames reads one per record
    offset: int
    length: int
    header_length: int
    crc: int
    first: int
    records: int
    at: float
    receipt: Receipt | None


def frame_header(first: int, count: int, at: float, receipt: Receipt | None) -> bytes:
    if receipt is None:  # the common case, formatted without the json module
        return f'{{"first":{first},"count":{count},"at":{at!r}}}'.encode()
    fields = {
        "first": first,
        "count": count,
        "at": at,
        "receipt": {
            "principal": receipt.principal,
            "key": receipt.key,
            "body_sha256": receipt.body_sha256,
            "dataset": receipt.dataset,
            "response": receipt.response,
            "at": receipt.at,
        },
    }
    return json.dumps(fields, separators=(",", ":")).encode()


def read_frame(file: SegmentFile, offset: int) -> Frame:
    """The frame at `offset`, from its prefix and header (the body unread)."""
    i = file.get(offset, PREFIX.size)
    if i < 0:
        raise BadFrame("an incomplete frame")
    magic, header_length, body_length, crc = PREFIX.unpack_from(file.buf, i)
    if magic != MAGIC:
        raise BadFrame("no frame")
    length = PREFIX.size + header_length + body_length
    if header_length > MAX_HEADER or offset + length > file.size:
        raise BadFrame("an incomplete frame")
    i = file.get(offset, PREFIX.size + header_length)
    if i < 0:
        raise BadFrame("an incomplete frame")
    i += PREFIX.size
    plain = PLAIN_HEADER.fullmatch(file.buf, i, i + header_length)
    try:
        if plain is not None:
            first, count, at = int(plain[1]), int(plain[2]), float(plain[3])
            receipt = None
        else:
            header = json.loads(file.buf[i : i + header_length])
            first, count, at = header["first"], header["count"], float(header["at"])
            found = header.get("receipt")
            receipt = Receipt(**found) if found is not None else None
    except (ValueError, KeyError, TypeError) as exc:
        raise BadFrame(f"an unreadable frame header ({exc})") from None
    if not (isinstance(first, int) and isinstance(count, int) and first >= 0 and count > 0):
        raise BadFrame("a frame header without positions")
    return Frame(offset, length, header_length, crc, first, count, at, receipt)


def checked_body(file: SegmentFile, frame: Frame, path: Path) -> int:
    """Check the whole frame against its CRC; the index of its body in `file.buf`."""
    i = file.get(frame.offset, frame.length)
    if i < 0:
        raise BadFrame("an incomplete frame")
    if zlib.crc32(memoryview(file.buf)[i + PREFIX.size : i + frame.length]) != frame.crc:
        raise BadFrame("a frame whose CRC does not match")
    return i + PREFIX.size + frame.header_length


def frame_records(
    buf: bytes, at: int, frame: Frame, skip: int, want: int, path: Path
) -> list[bytes]:
    """Records `skip` .. `skip + want - 1` of a frame's body, which starts at `buf[at]`."""
    unpack = U32.unpack_from
    end = at + frame.length - PREFIX.size - frame.header_length
    out: list[bytes] = []
    try:
        for number in range(min(frame.records, skip + want)):
            (n,) = unpack(buf, at)
            at += 4
            if number >= skip:
                out.append(buf[at : at + n])
            at += n
    except struct.error:
        at = end + 1
    if at > end:  # the CRC matched: only a writer's bug makes this
        raise TerminalError(f"{path}: the frame at byte {frame.offset} is malformed")
    return out


def intact_after(fd: int, offset: int, size: int) -> bool:
    """Whether an intact frame starts anywhere after the damaged one at `offset`."""
    rest = SegmentFile(-1, size - offset, os.pread(fd, size - offset, offset))
    found = rest.buf.find(MAGIC, 1)
    while found >= 0:
        try:
            checked_body(rest, read_frame(rest, found), Path())
        except BadFrame:
            found = rest.buf.find(MAGIC, found + 1)
        else:
            return True
    return False


# --- reading, for the writer and for readers elsewhere -----------------------------------
def segment_firsts(folder: Path) -> list[int]:
    """The first positions of the segments in a dataset's folder, in order."""
    return sorted(
        int(m[1]) for name in os.listdir(folder) if (m := SEGMENT_NAME.match(name)) is not None
    )


def locate(segments: Sequence[Segment], start: int, dataset: str, folder: Path) -> int:
    """The index of the segment holding position `start`; an error when it was trimmed."""
    if not segments or start < segments[0].first:
        first = segments[0].first if segments else 0
        raise TerminalError(
            f"records of {dataset} before position {first} are no longer "
            f"in the log {folder}; position {start} was asked for"
        )
    return bisect.bisect_right(segments, start, key=lambda s: s.first) - 1


def read_spans(
    cursor: Cursor, spans: list[tuple[int, Path, int]], start: int, limit: int, stop: int
) -> list[tuple[int, bytes]]:
    """Records at positions `start` .. `stop - 1`, at most `limit`, from segments (first,
    path, durable bytes; -1: the file's size now), each frame checked against its CRC. Frames
    from `stop` on are never looked at (a reader elsewhere knows a position, not a size)."""
    out: list[tuple[int, bytes]] = []
    at = cursor.at
    for number, (first, path, size) in enumerate(spans):
        if number == 0 and at is not None and at[0] == first and at[2] <= start:
            offset, position = at[1], at[2]  # sequential reads go on from there
        else:
            offset, position = 0, first
        file = open_segment(cursor, first, path, size)
        size = file.size
        while offset < size and position < stop:
            try:
                frame = read_frame(file, offset)
                after = frame.first + frame.records
                where = checked_body(file, frame, path) if after > start else -1
            except BadFrame as bad:  # in bytes fsynced and acknowledged: not a torn tail
                raise TerminalError(
                    f"{path}: {bad.args[0]} at byte {offset}: the log is damaged"
                ) from None
            if frame.first != position:
                raise TerminalError(
                    f"{path}: the frame at byte {offset} holds position {frame.first}, "
                    f"{position} was expected: the log is damaged"
                )
            if after <= start:  # skipped by its header alone
                offset, position = offset + frame.length, after
                continue
            skip = max(0, start - frame.first)
            taken = frame.first + skip
            want = min(limit - len(out), stop - taken)
            values = frame_records(file.buf, where, frame, skip, want, path)
            out.extend(zip(range(taken, taken + len(values)), values, strict=True))
            if skip + len(values) < frame.records:
                break  # the rest of this frame is for the next read
            offset, position = offset + frame.length, after
            if len(out) >= limit:
                break
        cursor.at = (first, offset, position)
        if len(out) >= limit or position >= stop:
            break
    return out


def open_segment(cursor: Cursor, first: int, path: Path, size: int) -> SegmentFile:
    """The cursor's open file on segment `first` (under `cursor.lock`), bounded by `size`
    or, when it is -1, by the file's size now, its buffer dropped (a restarted writer may
    have cut and rewritten bytes that were past the durable end)."""
    if cursor.file is None or cursor.file_first != first:
        cursor.close()
        cursor.file = SegmentFile(os.open(path, os.O_RDONLY | os.O_CLOEXEC), 0)
        cursor.file_first = first
    file = cursor.file
    if size < 0:
        file.size, file.buf = os.fstat(file.fd).st_size, b""
    else:
        file.size = size
    return file


# --- files -----------------------------------------------------------------------------
def write_all(fd: int, parts: list[bytes]) -> None:
    for start in range(0, len(parts), IOV_MAX):
        chunk = parts[start : start + IOV_MAX]
        written = os.writev(fd, chunk)
        wanted = sum(map(len, chunk))
        if written < wanted:  # a short write (a signal, a full disk): write the rest plainly
            rest = memoryview(b"".join(chunk))[written:]
            while rest:
                rest = rest[os.write(fd, rest) :]


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_folder(folder: Path) -> int:
    fd = os.open(folder / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TerminalError(
            f"another `digital-finance serve` uses the log folder {folder}: one service per "
            "log folder (give this one its own [api] log_dir)"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    with contextlib.suppress(OSError):  # who holds it, for a person looking: not needed
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def read_or_create_id(folder: Path) -> str:
    found = read_id(folder)
    if found is None:
        text = secrets.token_hex(6)
        temp = folder / f".log-id.{os.getpid()}.tmp"
        with open(temp, "w", encoding="ascii") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, folder / "log-id")
        fsync_folder(folder)
        return text
    return found


def read_id(folder: Path) -> str | None:
    """The log id in `folder/log-id`; None when there is none yet."""
    path = folder / "log-id"
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        text = ""
    if not LOG_ID.match(text):
        raise TerminalError(f"{path} does not hold a log id (12 hex characters): {text[:40]!r}")
    return text
