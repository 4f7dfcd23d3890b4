"""Lines of a block without the native kernel: numpy and Arrow's UTF-8 validation.

The kernel (`native/kernel/src/lines.rs`) does the same in one pass; this is the path of a
machine without a Rust toolchain, and it gives the same lines, numbers and verdicts
(`tests/unit/test_fuzz_reader.py` holds both to one model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digital_finance.arrow_arrays import int_array, large_strings
from digital_finance.sources.input_limits import PREFIX_BYTES, InputLimits
from digital_finance.sources.line_chunk import LineChunk, invalid_utf8, prefix_text, too_large

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa

    Offsets = npt.NDArray[np.int64]
    Bytes = npt.NDArray[np.uint8]


def chunk_from_lines(body: bytes, ends: Offsets, first_line: int, limits: InputLimits) -> LineChunk:
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
        raw, reasons = large_strings(texts), too_large(big, bad)
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
