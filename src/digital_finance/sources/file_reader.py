"""Read an input file as chunks of raw records with their 1-based line numbers.

Files are read as bytes in large blocks and split on newlines without decoding every line in
Python: the line offsets become an Arrow string array that shares the block's memory. This is
what keeps a 10M-line file within a fixed memory budget and fast. JSON-array files (one array
of objects) are unrolled element by element, keeping each element's exact text.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from digital_finance import native
from digital_finance.arrow_arrays import all_true, bool_array, int_array, large_strings

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa
    from _typeshed import WriteableBuffer

    Offsets = npt.NDArray[np.int64]
    Bytes = npt.NDArray[np.uint8]

BLOCK_BYTES = 32 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_WHITESPACE = b" \t\r\n"


@dataclass(frozen=True)
class LineChunk:
    """Raw records of one file: `raw` (text without the line end) and `line_number`."""

    table: pa.Table  # columns: line_number int64, raw large_string, utf8_ok bool

    @property
    def num_rows(self) -> int:
        """How many physical lines (records and blank lines) the chunk holds."""
        return int(self.table.num_rows)


class _Part(io.RawIOBase):
    """Bytes [start, end) of a file: a read never sees what was appended after it was listed."""

    def __init__(self, path: str, start: int, end: int | None) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed with the part
        self._file.seek(start)
        self._left = end - start if end is not None else None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        with memoryview(buffer) as view:
            if self._left is None:
                return self._file.readinto(view)
            if self._left <= 0:
                return 0
            got = self._file.readinto(view[: self._left])
            self._left -= got
            return got

    def close(self) -> None:
        self._file.close()
        super().close()


def _open(path: str, start: int = 0, end: int | None = None) -> io.BufferedIOBase:
    raw = io.BufferedReader(_Part(path, start, end))
    head = raw.peek(2)[:2]
    if head == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def _first_significant_byte(stream: io.BufferedIOBase) -> tuple[bytes, bytes]:
    """Return (first non-blank byte, everything read so far) without losing any input."""
    seen = b""
    while True:
        block = stream.read(64 * 1024)
        if not block:
            return b"", seen
        seen += block
        body = seen[3:] if seen.startswith(_BOM) else seen
        stripped = body.lstrip(_WHITESPACE)
        if stripped:
            return stripped[:1], seen


def read_chunks(
    path: str,
    block_bytes: int = BLOCK_BYTES,
    *,
    start: int = 0,
    end: int | None = None,
    first_line: int = 1,
) -> Iterator[LineChunk]:
    """Yield the records of bytes [start, end) of the file in chunks of about `block_bytes`.

    From the start of a file (`start` 0) every form is read: NDJSON, one JSON array, gzip, a
    byte-order mark. A later part (lines appended after an earlier read, `sources.file_scan`)
    is plain NDJSON whose lines are numbered on from `first_line`.
    """
    if start > 0:
        yield from _part_chunks(path, block_bytes, start, end, first_line)
        return
    with _open(path, 0, end) as stream:
        first, head = _first_significant_byte(stream)
        if first == b"[":
            data = head + stream.read()
            chunk = _native_array_chunk(data) or _array_chunk(data)
            if chunk is not None:
                yield chunk
                return
            yield from _ndjson_chunks(iter([data]))
            return
        module = native.kernel()
        if module is not None:
            if not isinstance(stream, gzip.GzipFile):
                # a small file needs no 32 MB buffer: zeroing one costs more than reading it
                size = os.path.getsize(path) if end is None else end
                block_bytes = min(block_bytes, size + 1)
            yield from _native_chunks(module, stream, head, block_bytes)
            return
        yield from _ndjson_chunks(_blocks(stream, head, block_bytes))


def _part_chunks(
    path: str, block_bytes: int, start: int, end: int | None, first_line: int
) -> Iterator[LineChunk]:
    with _open_plain(path, start, end) as stream:
        module = native.kernel()
        if end is not None:
            block_bytes = min(block_bytes, end - start + 1)
        if module is not None:
            yield from _native_chunks(module, stream, b"", block_bytes, first_line, bom=False)
        else:
            yield from _ndjson_chunks(_blocks(stream, b"", block_bytes), first_line, bom=False)


def _open_plain(path: str, start: int, end: int | None) -> io.BufferedIOBase:
    return io.BufferedReader(_Part(path, start, end))


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
    next_line: int = 1,
    bom: bool = True,
) -> Iterator[LineChunk]:
    """NDJSON split by the kernel, read into one reused buffer.

    The kernel copies each block's lines into arrays of their own, so the buffer is filled
    again in place: no block is ever copied in Python, which at 150 MB of input saved
    hundreds of megabytes of freshly touched memory.
    """
    buffer = bytearray(max(block_bytes, len(head), 1))
    buffer[: len(head)] = head
    start = len(_BOM) if bom and head.startswith(_BOM) else 0
    filled = len(head)
    at_end = False
    while not at_end:
        with memoryview(buffer) as view:
            got = _fill(stream, view[filled:])
        filled += got
        at_end = filled < len(buffer)
        cut = buffer.rfind(b"\n", start, filled)
        if cut < 0:
            if not at_end:  # one line longer than the buffer: make room and read on
                buffer.extend(bytes(len(buffer)))
            continue
        with memoryview(buffer) as view:
            chunk = _native_split(module, view[start : cut + 1], next_line)
        yield chunk
        next_line += chunk.num_rows
        rest = filled - (cut + 1)
        buffer[:rest] = buffer[cut + 1 : filled]
        filled, start = rest, 0
    if filled > start:
        yield _native_split(module, bytes(buffer[start:filled]) + b"\n", next_line)


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
    blocks: Iterator[bytes], next_line: int = 1, bom: bool = True
) -> Iterator[LineChunk]:
    carry = b""
    first = bom
    for block in blocks:
        data = carry + block
        if first:
            first = False
            if data.startswith(_BOM):
                data = data[3:]
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
            continue
        carry = data[cut + 1 :]
        chunk = _chunk_from_block(data[: cut + 1], next_line)
        yield chunk
        next_line += chunk.num_rows
    if carry:
        yield _chunk_from_block(carry + b"\n", next_line)


def _chunk_from_block(body: bytes, first_line: int) -> LineChunk:
    """The lines of a block that ends in a newline: split natively where the kernel is."""
    import numpy as np

    module = native.kernel()
    if module is None:
        ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10)
        return _chunk_from_lines(body, ends, first_line)
    return _native_split(module, body, first_line)


def _native_split(module: ModuleType, body: bytes | memoryview, first_line: int) -> LineChunk:
    import numpy as np
    import pyarrow as pa

    offsets, text, bad_utf8 = module.split_lines(body)
    count = len(offsets) // 8 - 1
    raw = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))
    if bad_utf8:
        ok = np.ones(count, dtype=bool)
        ok[bad_utf8] = False
        utf8_ok = bool_array(ok)
    else:
        utf8_ok = all_true(count)
    numbers = int_array(np.arange(first_line, first_line + count), pa.int64())
    return LineChunk(pa.table({"line_number": numbers, "raw": raw, "utf8_ok": utf8_ok}))


def _chunk_from_lines(body: bytes, ends: Offsets, first_line: int) -> LineChunk:
    """Build the chunk table from a block that ends in a newline.

    The line ends (`\\n`, and a `\\r` right before it) are dropped by one vectorised copy of
    the block, so each record's text is exactly the line without its line end.
    """
    import numpy as np
    import pyarrow as pa

    data = np.frombuffer(body, dtype=np.uint8)
    count = len(ends)
    starts = np.empty(count, dtype=np.int64)
    starts[0:1] = 0
    starts[1:] = ends[:-1] + 1
    has_cr = (ends > starts) & (data[np.maximum(ends - 1, 0)] == 13)
    drop = np.zeros(len(data), dtype=bool)
    drop[ends] = True
    drop[ends[has_cr] - 1] = True
    kept = data[~drop]
    # each earlier line dropped its newline and, for CRLF, its carriage return
    dropped_before = np.arange(count, dtype=np.int64) + np.cumsum(has_cr) - has_cr
    offsets = np.empty(count + 1, dtype=np.int64)
    offsets[:-1] = starts - dropped_before
    offsets[-1] = len(kept)
    raw = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(kept))
    utf8_ok = all_true(count)
    try:
        raw.validate(full=True)
    except pa.ArrowInvalid:
        raw, utf8_ok = _repair_utf8(kept, offsets)
    numbers = int_array(np.arange(first_line, first_line + count), pa.int64())
    return LineChunk(pa.table({"line_number": numbers, "raw": raw, "utf8_ok": utf8_ok}))


def _repair_utf8(kept: Bytes, offsets: Offsets) -> tuple[pa.Array, pa.Array]:
    """Find the lines that are not UTF-8 and replace their text by an escaped copy.

    Only lines with a byte of 0x80 or above can be invalid, so only those are decoded in
    Python; a bad line's text becomes its bytes with backslash escapes for the bad bytes.
    """
    import numpy as np
    import pyarrow as pa

    count = len(offsets) - 1
    high = np.flatnonzero(kept >= 0x80)
    candidates = np.unique(np.searchsorted(offsets, high, side="right") - 1)
    ok = np.ones(count, dtype=bool)
    fixed: dict[int, bytes] = {}
    for line in candidates.tolist():
        chunk = kept[offsets[line] : offsets[line + 1]].tobytes()
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            ok[line] = False
            fixed[line] = chunk.decode("utf-8", errors="backslashreplace").encode("utf-8")
    pieces: list[bytes] = []
    lengths = np.diff(offsets)
    cursor = 0
    for line, replacement in sorted(fixed.items()):
        pieces.append(kept[cursor : offsets[line]].tobytes())
        pieces.append(replacement)
        cursor = int(offsets[line + 1])
        lengths[line] = len(replacement)
    pieces.append(kept[cursor:].tobytes())
    new_offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    raw = pa.LargeStringArray.from_buffers(
        count, pa.py_buffer(new_offsets), pa.py_buffer(b"".join(pieces))
    )
    raw.validate(full=True)
    return raw, bool_array(ok)


def _native_array_chunk(data: bytes) -> LineChunk | None:
    """A JSON-array file unrolled by the kernel, where the kernel is and the array is plain.

    The kernel takes strict RFC 8259 arrays only; anything else (NaN, deep nesting, broken
    text) returns None, and `_array_chunk` decides as it always has.
    """
    module = native.kernel()
    if module is None:
        return None
    found = module.split_array(data)
    if found is None:
        return None
    import pyarrow as pa

    offsets, text, lines = found
    count = len(lines) // 8
    raw = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))
    numbers = pa.Array.from_buffers(pa.int64(), count, [None, pa.py_buffer(lines)])
    return LineChunk(pa.table({"line_number": numbers, "raw": raw, "utf8_ok": all_true(count)}))


def _array_chunk(data: bytes) -> LineChunk | None:
    """Unroll a JSON-array file; None when the text is not exactly one JSON array."""
    import pyarrow as pa

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.startswith("\ufeff"):
        text = text[1:]
    # numbers stay text: Python refuses to convert integers of more than 4,300 digits
    decoder = json.JSONDecoder(parse_int=str, parse_float=str)
    ws = " \t\r\n"
    pos = len(text) - len(text.lstrip(ws)) + 1  # just past "["
    raws: list[str] = []
    lines: list[int] = []
    line = 1 + text.count("\n", 0, pos)
    counted_to = pos
    try:
        while True:
            while pos < len(text) and text[pos] in ws:
                pos += 1
            if not raws and pos < len(text) and text[pos] == "]":
                pos += 1
                break
            _, end = decoder.raw_decode(text, pos)
            line += text.count("\n", counted_to, pos)
            counted_to = pos
            raws.append(text[pos:end])
            lines.append(line)
            pos = end
            while pos < len(text) and text[pos] in ws:
                pos += 1
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if pos < len(text) and text[pos] == "]":
                pos += 1
                break
            return None
    except (ValueError, RecursionError):
        # not one array Python's decoder can follow (RecursionError: nesting too deep):
        # the file is read as NDJSON, and its lines end up in quarantine
        return None
    if text[pos:].strip(ws):
        return None
    return LineChunk(
        pa.table(
            {
                "line_number": int_array(lines, pa.int64()),
                "raw": large_strings(raws),
                "utf8_ok": all_true(len(raws)),
            }
        )
    )
