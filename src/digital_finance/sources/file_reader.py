"""Read an input file as chunks of raw records with their 1-based line numbers.

Files are read as bytes in large blocks and split on newlines without decoding every line in
Python: the line offsets become an Arrow string array that shares the block's memory. This is
what keeps a 10M-line file within a fixed memory budget and fast. JSON-array files (one array
of objects) are unrolled element by element, keeping each element's exact text.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

BLOCK_BYTES = 32 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_WHITESPACE = b" \t\r\n"


@dataclass(frozen=True)
class LineChunk:
    """Raw records of one file: `raw` (text without the line end) and `line_number`."""

    table: pa.Table  # columns: line_number int64, raw large_string, utf8_ok bool
    source_bytes: int = 0  # bytes of the (possibly compressed) file this chunk covers

    @property
    def num_rows(self) -> int:
        """How many physical lines (records and blank lines) the chunk holds."""
        return int(self.table.num_rows)


def _open(path: str) -> io.BufferedIOBase:
    raw = open(path, "rb")  # noqa: SIM115 - the caller closes the returned stream
    head = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
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


def read_chunks(path: str, block_bytes: int = BLOCK_BYTES) -> Iterator[LineChunk]:
    """Yield the file's records in chunks of about `block_bytes`, in file order."""
    with _open(path) as stream:
        first, head = _first_significant_byte(stream)
        if first == b"[":
            data = head + stream.read()
            chunk = _array_chunk(data)
            if chunk is not None:
                yield chunk
                return
            yield from _ndjson_chunks(iter([data]))
            return
        yield from _ndjson_chunks(_blocks(stream, head, block_bytes))


def _blocks(stream: io.BufferedIOBase, head: bytes, block_bytes: int) -> Iterator[bytes]:
    first = head + stream.read(block_bytes)
    if first:
        yield first
    while True:
        block = stream.read(block_bytes)
        if not block:
            return
        yield block


def _ndjson_chunks(blocks: Iterator[bytes]) -> Iterator[LineChunk]:
    import numpy as np

    carry = b""
    next_line = 1
    first = True
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
        body = data[: cut + 1]
        ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10)
        yield _chunk_from_lines(body, ends, next_line)
        next_line += len(ends)
    if carry:
        body = carry + b"\n"
        ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10)
        yield _chunk_from_lines(body, ends, next_line)


def _chunk_from_lines(body: bytes, ends: object, first_line: int) -> LineChunk:
    """Build the chunk table from a block that ends in a newline.

    The line ends (`\n`, and a `\r` right before it) are dropped by one vectorised copy of
    the block, so each record's text is exactly the line without its line end.
    """
    import numpy as np
    import pyarrow as pa

    if not isinstance(ends, np.ndarray):
        raise TypeError("line ends must be a numpy array")
    data = np.frombuffer(body, dtype=np.uint8)
    count = len(ends)
    drop = np.zeros(len(data), dtype=bool)
    drop[ends] = True
    cr = ends[ends > 0] - 1
    drop[cr[data[cr] == 13]] = True
    kept = data[~drop]
    starts = np.empty(count + 1, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends + 1
    dropped_before = np.concatenate(([0], np.cumsum(drop, dtype=np.int64)))
    offsets = starts - dropped_before[starts]
    raw = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(kept))
    utf8_ok = pa.nulls(count, pa.bool_()).fill_null(True)
    try:
        raw.validate(full=True)
    except pa.ArrowInvalid:
        raw, utf8_ok = _repair_utf8(kept.tobytes(), offsets)
    numbers = pa.array(np.arange(first_line, first_line + count, dtype=np.int64))
    return LineChunk(pa.table({"line_number": numbers, "raw": raw, "utf8_ok": utf8_ok}), len(body))


def _repair_utf8(body: bytes, offsets: object) -> tuple[pa.Array, pa.Array]:
    """The slow path for a block with bad bytes: decode line by line, flag the bad lines."""
    import pyarrow as pa

    texts: list[str] = []
    flags: list[bool] = []
    bounds = list(offsets)  # type: ignore[call-overload]
    for start, end in itertools.pairwise(bounds):
        line = body[start:end]
        try:
            texts.append(line.decode("utf-8"))
            flags.append(True)
        except UnicodeDecodeError:
            texts.append(line.decode("utf-8", errors="backslashreplace"))
            flags.append(False)
    return pa.array(texts, pa.large_string()), pa.array(flags, pa.bool_())


def _array_chunk(data: bytes) -> LineChunk | None:
    """Unroll a JSON-array file; None when the text is not exactly one JSON array."""
    import pyarrow as pa

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.startswith("\ufeff"):
        text = text[1:]
    decoder = json.JSONDecoder()
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
    except json.JSONDecodeError:
        return None
    if text[pos:].strip(ws):
        return None
    return LineChunk(
        pa.table(
            {
                "line_number": pa.array(lines, pa.int64()),
                "raw": pa.array(raws, pa.large_string()),
                "utf8_ok": pa.array([True] * len(raws), pa.bool_()),
            }
        ),
        len(data),
    )
