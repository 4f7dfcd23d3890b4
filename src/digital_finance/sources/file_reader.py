"""Read an input file as chunks of raw records with their 1-based line numbers.

Files are read as bytes in large blocks and split on newlines without decoding every line in
Python: the line offsets become an Arrow string array that shares the block's memory. This is
what keeps a 10M-line file within a fixed memory budget and fast. JSON-array files (one array
of objects) are unrolled element by element, keeping each element's exact text.

Memory stays bounded whatever the input (`sources.input_limits`): a line longer than the
record limit is skipped with only its first bytes kept, a gzip stream is stopped when it
inflates like a bomb, and only a JSON array is ever held whole, up to its own limit.

This module streams the bytes; `line_chunk` holds what a chunk is, `json_arrays` unrolls
array files, and `numpy_lines` splits lines where the native kernel is not installed.
"""

from __future__ import annotations

import gzip
import io
import mmap
import threading
from collections.abc import Generator, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from digital_finance import native
from digital_finance.arrow_arrays import int_array
from digital_finance.sources.input_limits import PREFIX_BYTES, InputLimits
from digital_finance.sources.input_store import InputStore
from digital_finance.sources.json_arrays import array_chunk, cap_elements, native_array_chunk
from digital_finance.sources.line_chunk import LineChunk, invalid_utf8, oversize_chunk, too_large
from digital_finance.sources.numpy_lines import chunk_from_lines

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from _typeshed import WriteableBuffer

    Offsets = npt.NDArray[np.int64]
    Bytes = npt.NDArray[np.uint8]

BLOCK_BYTES = 32 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_WHITESPACE = b" \t\r\n"
_SKIP_BLOCK = 1024 * 1024
_LOOK_AHEAD = 1024 * 1024  # bytes searched for the "[" that makes a file one JSON array
DEFAULT_LIMITS = InputLimits()


class _Part(io.RawIOBase):
    """Bytes [start, end) of a file: a read never sees what was appended after it was listed."""

    def __init__(self, store: InputStore, path: str, start: int, end: int | None) -> None:
        self._file = store.open(path, start, end)
        self._left = end - start if end is not None else None
        self.consumed = 0  # bytes read from the file so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        with memoryview(buffer) as view:
            if self._left is None:
                got = self._file.readinto(view)
            elif self._left <= 0:
                return 0
            else:
                got = self._file.readinto(view[: self._left])
                self._left -= got
            self.consumed += got
            return got

    def close(self) -> None:
        self._file.close()
        super().close()


class _Inflating(io.RawIOBase):
    """A gzip stream that stops, with a clear error, when it inflates past the limits."""

    def __init__(
        self, path: str, part: _Part, buffered: io.BufferedIOBase, limits: InputLimits
    ) -> None:
        self._path, self._part, self._limits = path, part, limits
        self._gzip = gzip.GzipFile(fileobj=buffered, mode="rb")
        self._inflated = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        got = self._gzip.readinto(buffer)
        self._inflated += got
        self._limits.check_inflated(self._path, self._inflated, self._part.consumed)
        return got

    def close(self) -> None:
        self._gzip.close()
        self._part.close()
        super().close()


def _open(
    store: InputStore, path: str, start: int, end: int | None, limits: InputLimits
) -> tuple[io.BufferedIOBase, bool]:
    """The bytes of the file from `start`, inflated when they are gzip; and whether they are."""
    part = _Part(store, path, start, end)
    buffered = io.BufferedReader(part)
    if buffered.peek(2)[:2] == _GZIP_MAGIC:
        inflating = _Inflating(path, part, buffered, limits)
        return io.BufferedReader(inflating, buffer_size=1024 * 1024), True
    return buffered, False


def _first_significant_byte(stream: io.BufferedIOBase) -> tuple[bytes, bytes]:
    """Return (first non-blank byte, everything read so far) without losing any input.

    Only the first `_LOOK_AHEAD` bytes are looked at: a file that is blank for longer is
    read as NDJSON (its blank lines are ignored), so leading blanks never pile up in memory.
    """
    seen = bytearray()
    while len(seen) < _LOOK_AHEAD:
        block = stream.read(64 * 1024)
        if not block:
            return b"", bytes(seen)
        at = len(seen)
        seen += block
        # the byte-order mark may straddle the first blocks; after them, look at the new block
        body = seen[at:] if at >= len(_BOM) else seen[3:] if seen.startswith(_BOM) else seen
        stripped = body.lstrip(_WHITESPACE)
        if stripped:
            return bytes(stripped[:1]), bytes(seen)
    return b"", bytes(seen)


def input_form(path: str, store: InputStore | None = None) -> Literal["gzip", "array", "lines"]:
    """What the file, read from its start, is: gzip, one JSON array, or NDJSON lines."""
    opened, gzipped = _open(store or InputStore(), path, 0, None, DEFAULT_LIMITS)
    with opened as stream:
        if gzipped:
            return "gzip"
        return "array" if _first_significant_byte(stream)[0] == b"[" else "lines"


def is_plain_ndjson(path: str, store: InputStore | None = None) -> bool:
    """Whether the file, read from its start, is NDJSON as it stands: not gzip, not one JSON
    array. Only such a file can be read in pieces (`sources.file_pieces`)."""
    return input_form(path, store) == "lines"


def read_chunks(
    path: str,
    block_bytes: int = BLOCK_BYTES,
    *,
    start: int = 0,
    end: int | None = None,
    first_line: int = 1,
    limits: InputLimits = DEFAULT_LIMITS,
    store: InputStore | None = None,
) -> Generator[LineChunk, None, None]:
    """Yield the records of bytes [start, end) of the file in chunks of about `block_bytes`.

    From the start of a file (`start` 0) every form is read: NDJSON, one JSON array, gzip, a
    byte-order mark. A later part (lines appended after an earlier read, `sources.file_scan`)
    is plain NDJSON whose lines are numbered on from `first_line`. Raises `FileRefusedError`
    for a file beyond the limits that no quarantine row can stand for (a bomb, a huge array).
    """
    store = store or InputStore()
    if start > 0:
        yield from _part_chunks(store, path, block_bytes, start, end, first_line, limits)
        return
    opened, gzipped = _open(store, path, 0, end, limits)
    with opened as stream:
        first, head = _first_significant_byte(stream)
        if first == b"[":
            data = head + stream.read(max(0, limits.max_array_bytes + 1 - len(head)))
            limits.check_array(path, len(data))
            chunk = native_array_chunk(data) or array_chunk(data)
            if chunk is not None:
                yield cap_elements(chunk, limits)
                return
            yield from _ndjson_chunks(iter([data]), limits)
            return
        module = native.kernel()
        if module is not None:
            if not gzipped:
                # a small file needs no 32 MB buffer: zeroing one costs more than reading it
                size = store.size(path) if end is None else end
                block_bytes = min(block_bytes, size + 1)
            yield from _native_chunks(module, stream, head, block_bytes, limits)
            return
        yield from _ndjson_chunks(_blocks(stream, head, block_bytes), limits)


def _part_chunks(
    store: InputStore,
    path: str,
    block_bytes: int,
    start: int,
    end: int | None,
    first_line: int,
    limits: InputLimits,
) -> Iterator[LineChunk]:
    with io.BufferedReader(_Part(store, path, start, end)) as stream:
        module = native.kernel()
        if end is not None:
            block_bytes = min(block_bytes, end - start + 1)
        if module is not None:
            yield from _native_chunks(
                module, stream, b"", block_bytes, limits, first_line, bom=False
            )
        else:
            yield from _ndjson_chunks(
                _blocks(stream, b"", block_bytes), limits, first_line, bom=False
            )


def _fill(stream: io.BufferedIOBase, view: memoryview) -> int:
    """Read until `view` is full or the stream ends; bytes read."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _native_chunks(
    module: ModuleType,
    stream: io.BufferedIOBase,
    head: bytes,
    block_bytes: int,
    limits: InputLimits,
    next_line: int = 1,
    bom: bool = True,
) -> Iterator[LineChunk]:
    """NDJSON split by the kernel, read into one reused buffer.

    The kernel copies each block's lines into arrays of their own, so the buffer is filled
    again in place: no block is ever copied in Python, which at 150 MB of input saved
    hundreds of megabytes of freshly touched memory. The buffer grows for a long line only
    up to the record limit; a longer line is skipped (`_skip_line`).
    """
    size = max(block_bytes, len(head), 1)  # the block: the buffer's first `size` bytes
    held = [_BUFFERS.take(size)]  # the buffer, replaced by a larger one for a long line
    try:
        yield from _split_blocks(module, stream, held, size, head, limits, next_line, bom)
    finally:
        _BUFFERS.give(held[0])


def _split_blocks(
    module: ModuleType,
    stream: io.BufferedIOBase,
    held: list[mmap.mmap],
    size: int,
    head: bytes,
    limits: InputLimits,
    next_line: int,
    bom: bool,
) -> Iterator[LineChunk]:
    buffer = held[0]
    buffer[: len(head)] = head
    start = len(_BOM) if bom and head.startswith(_BOM) else 0
    filled = len(head)
    at_end = False
    while not at_end:
        with memoryview(buffer) as view:
            got = _fill(stream, view[filled:size])
        filled += got
        at_end = filled < size
        cut = buffer.rfind(b"\n", start, filled)
        if cut < 0:
            # one byte of grace: a `\r` before the newline is not part of the record
            if filled - start > limits.max_record_bytes + 1:
                prefix, after, at_end = _skip_line(stream, bytes(buffer[start:filled]))
                yield oversize_chunk(prefix, next_line)
                next_line += 1
                if len(after) > len(buffer):  # what followed the line, up to a skip block
                    larger = _BUFFERS.take(len(after))
                    _BUFFERS.give(buffer)
                    held[0] = buffer = larger
                buffer[: len(after)] = after
                filled, start = len(after), 0
            elif not at_end:  # one line longer than the block: make room and read on
                size *= 2
                if len(buffer) < size:
                    larger = _BUFFERS.take(size)
                    larger[:filled] = buffer[:filled]
                    _BUFFERS.give(buffer)
                    held[0] = buffer = larger
            continue
        with memoryview(buffer) as view:
            chunk = _native_split(module, view[start : cut + 1], next_line, limits)
        yield chunk
        next_line += chunk.lines_covered
        rest = filled - (cut + 1)
        buffer[:rest] = buffer[cut + 1 : filled]
        filled, start = rest, 0
    if filled > start:
        yield _native_split(module, bytes(buffer[start:filled]) + b"\n", next_line, limits)


class _Buffers:
    """Read buffers kept between files: a new 15 MB buffer faults in page by page, about a
    tenth of a second a 1M-record batch for buffers that are filled again at once. Two are
    kept (the batch's reader and the read ahead, `sources.read_ahead`), none larger than
    twice a block.

    A buffer is anonymous memory (`mmap`), not a `bytearray`: a bytearray is zeroed when it
    is made, a pass over 32 MB with the interpreter lock held, where a mapping's pages are
    zero already and come in as the first read fills them, without the lock."""

    _KEPT = 2

    def __init__(self) -> None:
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> mmap.mmap:
        with self._lock:
            for i, buffer in enumerate(self._free):
                if len(buffer) >= size:
                    return self._free.pop(i)
        # a file of most of a block gets a whole one: the next, a little larger, fits in it
        return mmap.mmap(-1, BLOCK_BYTES if BLOCK_BYTES // 2 < size < BLOCK_BYTES else size)

    def give(self, buffer: mmap.mmap) -> None:
        if len(buffer) > 2 * BLOCK_BYTES:
            return
        with self._lock:
            if len(self._free) < self._KEPT:
                self._free.append(buffer)
            else:  # keep the largest
                smallest = min(range(len(self._free)), key=lambda i: len(self._free[i]))
                if len(self._free[smallest]) < len(buffer):
                    self._free[smallest] = buffer


_BUFFERS = _Buffers()


def _skip_line(stream: io.BufferedIOBase, head: bytes) -> tuple[bytes, bytes, bool]:
    """Read past the end of the current line, of which `head` was read, in small blocks.

    Returns the line's first `PREFIX_BYTES` (topped up from what is read), what follows the
    line, and whether the stream ended.
    """
    prefix, seen = head[:PREFIX_BYTES], len(head)
    while True:
        block = stream.read(_SKIP_BLOCK)
        if not block:
            return _without_cr(prefix, seen), b"", True
        cut = block.find(b"\n")
        part = block if cut < 0 else block[:cut]
        prefix += part[: max(0, PREFIX_BYTES - len(prefix))]
        seen += len(part)
        if cut >= 0:
            return _without_cr(prefix, seen), block[cut + 1 :], False


def _without_cr(prefix: bytes, line_bytes: int) -> bytes:
    # when the prefix is the whole line, its `\r` is the line end, not the record's
    return prefix[:-1] if line_bytes <= PREFIX_BYTES and prefix.endswith(b"\r") else prefix


def _blocks(stream: io.BufferedIOBase, head: bytes, block_bytes: int) -> Iterator[bytes]:
    first = head + stream.read(block_bytes)
    if first:
        yield first
    while True:
        block = stream.read(block_bytes)
        if not block:
            return
        yield block


def _ndjson_chunks(
    blocks: Iterator[bytes], limits: InputLimits, next_line: int = 1, bom: bool = True
) -> Iterator[LineChunk]:
    carry = b""
    first = bom
    skipping: bytes | None = None  # the first bytes of an oversize line being skipped
    skipped = 0  # how many bytes of it were read
    for block in blocks:
        if first:
            first = False
            if block.startswith(_BOM):
                block = block[3:]
        if skipping is not None:
            end = block.find(b"\n")
            part = block if end < 0 else block[:end]
            skipped += len(part)
            skipping += part[: max(0, PREFIX_BYTES - len(skipping))]
            if end < 0:
                continue
            yield oversize_chunk(_without_cr(skipping, skipped), next_line)
            next_line += 1
            skipping, block = None, block[end + 1 :]
        data = carry + block
        cut = data.rfind(b"\n")
        if cut >= 0:
            chunk = _chunk_from_block(data[: cut + 1], next_line, limits)
            yield chunk
            next_line += chunk.lines_covered
        carry = data[cut + 1 :]
        if len(carry) > limits.max_record_bytes + 1:  # + 1: a `\r` before the newline
            skipping, skipped, carry = carry[:PREFIX_BYTES], len(carry), b""
    if skipping is not None:
        yield oversize_chunk(_without_cr(skipping, skipped), next_line)
    elif carry:
        yield _chunk_from_block(carry + b"\n", next_line, limits)


def _chunk_from_block(body: bytes, first_line: int, limits: InputLimits) -> LineChunk:
    """The lines of a block that ends in a newline: split natively where the kernel is."""
    import numpy as np

    module = native.kernel()
    if module is None:
        ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10)
        return chunk_from_lines(body, ends, first_line, limits)
    return _native_split(module, body, first_line, limits)


def _native_split(
    module: ModuleType, body: bytes | memoryview, first_line: int, limits: InputLimits
) -> LineChunk:
    import numpy as np
    import pyarrow as pa

    offsets, text, bad_utf8, kept, covered, oversize = module.split_lines(
        body, limits.max_record_bytes, PREFIX_BYTES
    )
    count = len(offsets) // 8 - 1
    raw = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))
    bad = np.zeros(count, dtype=bool)
    if bad_utf8:
        bad[bad_utf8] = True
    if kept is None:
        index = np.arange(count, dtype=np.int64)
    else:  # empty lines were dropped: each kept line's place in the block
        index = np.frombuffer(kept, dtype=np.int64)
    numbers = int_array(index + first_line, pa.int64())
    if oversize:
        big = np.zeros(count, dtype=bool)
        big[oversize] = True
        reasons = too_large(big, bad)
    else:
        reasons = invalid_utf8(bad)
    return LineChunk(
        pa.table({"line_number": numbers, "raw": raw, "line_reason": reasons}), covered
    )
