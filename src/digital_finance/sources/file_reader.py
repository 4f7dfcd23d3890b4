"""Read an input file as chunks of raw records with their 1-based line numbers.

Files are read as bytes in large blocks and split on newlines without decoding every line in
Python: the line offsets become an Arrow string array that shares the block's memory. This is
what keeps a 10M-line file within a fixed memory budget and fast. JSON-array files (one array
of objects) are unrolled element by element, keeping each element's exact text.

Memory stays bounded whatever the input (`sources.input_limits`): a line longer than the
record limit is skipped with only its first bytes kept, a gzip stream is stopped when it
inflates like a bomb, and only a JSON array is ever held whole, up to its own limit.
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
from digital_finance.arrow_arrays import coded_strings, int_array, large_strings
from digital_finance.contract.schemas import INVALID_UTF8, RECORD_TOO_LARGE
from digital_finance.sources.input_limits import PREFIX_BYTES, InputLimits

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
_SKIP_BLOCK = 1024 * 1024
_LOOK_AHEAD = 1024 * 1024  # bytes searched for the "[" that makes a file one JSON array
DEFAULT_LIMITS = InputLimits()


@dataclass(frozen=True)
class LineChunk:
    """Raw records of one file: `raw` (text without the line end) and `line_number`.

    `line_reason` is null for a line read whole as UTF-8; otherwise the reader's verdict
    (`record_too_large`, whose `raw` is then the line's first bytes, or `invalid_utf8`,
    whose `raw` has the bad bytes escaped).
    """

    table: pa.Table  # columns: line_number int64, raw large_string, line_reason string
    lines: int | None = None  # physical lines covered (empty ones dropped); None: num_rows

    @property
    def num_rows(self) -> int:
        """How many lines (records and blank lines) the chunk holds."""
        return int(self.table.num_rows)

    @property
    def lines_covered(self) -> int:
        """How many lines of the file the chunk covers: where the next chunk's numbers start."""
        return self.num_rows if self.lines is None else self.lines


class _Part(io.RawIOBase):
    """Bytes [start, end) of a file: a read never sees what was appended after it was listed."""

    def __init__(self, path: str, start: int, end: int | None) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed with the part
        self._file.seek(start)
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

    def __init__(self, path: str, part: _Part, limits: InputLimits) -> None:
        self._path, self._part, self._limits = path, part, limits
        self._gzip = gzip.GzipFile(fileobj=io.BufferedReader(part), mode="rb")
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
    path: str, start: int = 0, end: int | None = None, limits: InputLimits = DEFAULT_LIMITS
) -> io.BufferedIOBase:
    part = _Part(path, start, end)
    with open(path, "rb") as probe:
        probe.seek(start)
        head = probe.read(2)
    if head == _GZIP_MAGIC:
        return io.BufferedReader(_Inflating(path, part, limits), buffer_size=1024 * 1024)
    return io.BufferedReader(part)


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


def read_chunks(
    path: str,
    block_bytes: int = BLOCK_BYTES,
    *,
    start: int = 0,
    end: int | None = None,
    first_line: int = 1,
    limits: InputLimits = DEFAULT_LIMITS,
) -> Iterator[LineChunk]:
    """Yield the records of bytes [start, end) of the file in chunks of about `block_bytes`.

    From the start of a file (`start` 0) every form is read: NDJSON, one JSON array, gzip, a
    byte-order mark. A later part (lines appended after an earlier read, `sources.file_scan`)
    is plain NDJSON whose lines are numbered on from `first_line`. Raises `FileRefusedError`
    for a file beyond the limits that no quarantine row can stand for (a bomb, a huge array).
    """
    if start > 0:
        yield from _part_chunks(path, block_bytes, start, end, first_line, limits)
        return
    with _open(path, 0, end, limits) as stream:
        first, head = _first_significant_byte(stream)
        if first == b"[":
            data = head + stream.read(max(0, limits.max_array_bytes + 1 - len(head)))
            limits.check_array(path, len(data))
            chunk = _native_array_chunk(data) or _array_chunk(data)
            if chunk is not None:
                yield _cap(chunk, limits)
                return
            yield from _ndjson_chunks(iter([data]), limits)
            return
        module = native.kernel()
        if module is not None:
            if _is_plain(path, 0):
                # a small file needs no 32 MB buffer: zeroing one costs more than reading it
                size = os.path.getsize(path) if end is None else end
                block_bytes = min(block_bytes, size + 1)
            yield from _native_chunks(module, stream, head, block_bytes, limits)
            return
        yield from _ndjson_chunks(_blocks(stream, head, block_bytes), limits)


def _is_plain(path: str, start: int) -> bool:
    with open(path, "rb") as probe:
        probe.seek(start)
        return probe.read(2) != _GZIP_MAGIC


def _part_chunks(
    path: str,
    block_bytes: int,
    start: int,
    end: int | None,
    first_line: int,
    limits: InputLimits,
) -> Iterator[LineChunk]:
    with _open_plain(path, start, end) as stream:
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
            # one byte of grace: a `\r` before the newline is not part of the record
            if filled - start > limits.max_record_bytes + 1:
                prefix, after, at_end = _skip_line(stream, bytes(buffer[start:filled]))
                yield _oversize_chunk(prefix, next_line)
                next_line += 1
                buffer[: len(after)] = after
                filled, start = len(after), 0
            elif not at_end:  # one line longer than the buffer: make room and read on
                buffer.extend(bytes(len(buffer)))
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


def prefix_text(head: bytes) -> str:
    """What stands for a record over the limit: its first bytes, as the kernel keeps them —
    without a character the cut split, and escaped where they are not UTF-8."""
    head = head[:PREFIX_BYTES]
    for cut in range(1, min(3, len(head)) + 1):
        lead = head[-cut]
        if lead & 0xC0 != 0x80:
            need = 4 if lead >= 0xF0 else 3 if lead >= 0xE0 else 2 if lead >= 0xC0 else 1
            if need > cut:
                head = head[:-cut]
            break
    return head.decode("utf-8", errors="backslashreplace")


def _oversize_chunk(prefix: bytes, line: int) -> LineChunk:
    """One line over the record limit: its first bytes stand for it."""
    import pyarrow as pa

    text = prefix_text(prefix)
    return LineChunk(
        pa.table(
            {
                "line_number": int_array([line], pa.int64()),
                "raw": large_strings([text]),
                "line_reason": pa.array([RECORD_TOO_LARGE], pa.string()),
            }
        )
    )


def _cap(chunk: LineChunk, limits: InputLimits) -> LineChunk:
    """Replace the array elements over the record limit by their first bytes.

    NDJSON lines are measured by the splitter, on their bytes as read; an element of an
    array is exact UTF-8 text, so its text's length is its size.
    """
    import numpy as np

    raw = chunk.table.column("raw").combine_chunks()
    if len(raw) == 0:
        return chunk
    offsets = np.frombuffer(raw.buffers()[1], dtype=np.int64)
    offsets = offsets[raw.offset : raw.offset + len(raw) + 1]
    over = np.diff(offsets) > limits.max_record_bytes
    if not over.any():
        return chunk
    texts = raw.to_pylist()
    for i in np.flatnonzero(over).tolist():
        texts[i] = prefix_text(texts[i].encode("utf-8"))
    # an array element is exact UTF-8 text: no other verdict to keep
    reasons = _too_large(over, np.zeros(len(over), dtype=bool))
    table = chunk.table.set_column(1, "raw", large_strings(texts))
    return LineChunk(table.set_column(2, "line_reason", reasons), chunk.lines)


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
            yield _oversize_chunk(_without_cr(skipping, skipped), next_line)
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
        yield _oversize_chunk(_without_cr(skipping, skipped), next_line)
    elif carry:
        yield _chunk_from_block(carry + b"\n", next_line, limits)


def _chunk_from_block(body: bytes, first_line: int, limits: InputLimits) -> LineChunk:
    """The lines of a block that ends in a newline: split natively where the kernel is."""
    import numpy as np

    module = native.kernel()
    if module is None:
        ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10)
        return _chunk_from_lines(body, ends, first_line, limits)
    return _native_split(module, body, first_line, limits)


def _native_split(
    module: ModuleType, body: bytes | memoryview, first_line: int, limits: InputLimits
) -> LineChunk:
    import numpy as np
    import pyarrow as pa

    offsets, text, bad_utf8, kept, covered, too_large = module.split_lines(
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
    if too_large:
        big = np.zeros(count, dtype=bool)
        big[too_large] = True
        reasons = _too_large(big, bad)
    else:
        reasons = invalid_utf8(bad)
    return LineChunk(
        pa.table({"line_number": numbers, "raw": raw, "line_reason": reasons}), covered
    )


def _too_large(big: npt.NDArray[np.bool_], bad: npt.NDArray[np.bool_]) -> pa.Array:
    """The `line_reason` column: `record_too_large` wins over `invalid_utf8`."""
    return coded_strings(len(big), [(bad, INVALID_UTF8), (big, RECORD_TOO_LARGE)])


def invalid_utf8(bad: npt.NDArray[np.bool_]) -> pa.Array:
    """The `line_reason` column of lines of which `bad` are not UTF-8."""
    return coded_strings(len(bad), [(bad, INVALID_UTF8)] if bad.any() else [])


def no_reasons(count: int) -> pa.Array:
    """The `line_reason` column of `count` lines read whole as UTF-8."""
    import pyarrow as pa

    return pa.nulls(count, pa.string())


def _chunk_from_lines(
    body: bytes, ends: Offsets, first_line: int, limits: InputLimits
) -> LineChunk:
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
    bad = np.zeros(count, dtype=bool)
    try:
        raw.validate(full=True)
    except pa.ArrowInvalid:
        raw, bad = _repair_utf8(kept, offsets)
    reasons = invalid_utf8(bad)
    numbers = int_array(np.arange(first_line, first_line + count), pa.int64())
    lengths = ends - starts - has_cr  # each line's bytes as read
    big = lengths > limits.max_record_bytes
    if big.any():  # over the limit: only the first bytes, escaped like the kernel does
        texts = raw.to_pylist()
        for i in np.flatnonzero(big).tolist():
            head = body[starts[i] : starts[i] + min(PREFIX_BYTES, int(lengths[i]))]
            texts[i] = prefix_text(head)
        raw, reasons = large_strings(texts), _too_large(big, bad)
    table = pa.table({"line_number": numbers, "raw": raw, "line_reason": reasons})
    empty = offsets[1:] == offsets[:-1]
    if empty.any():  # dropped, as the kernel drops them: a block of newlines costs no rows
        table = table.filter(pa.array(~empty))
    return LineChunk(table, count)


def _repair_utf8(kept: Bytes, offsets: Offsets) -> tuple[pa.Array, npt.NDArray[np.bool_]]:
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
    return raw, ~ok


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
    return LineChunk(
        pa.table({"line_number": numbers, "raw": raw, "line_reason": no_reasons(count)})
    )


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
                "line_reason": no_reasons(len(raws)),
            }
        )
    )
