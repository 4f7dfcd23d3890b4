"""Files that are one JSON array of objects, unrolled element by element.

Each element keeps its exact text and the line where it starts: by the kernel where the
file is strict JSON, by Python's decoder otherwise. The array is held whole, so its size
is bounded by `[input] max_array_bytes` before it gets here.
"""

from __future__ import annotations

import json

from digital_finance import native
from digital_finance.arrow_arrays import int_array, large_strings
from digital_finance.sources.input_limits import InputLimits
from digital_finance.sources.line_chunk import LineChunk, no_reasons, prefix_text, too_large


def native_array_chunk(data: bytes) -> LineChunk | None:
    """A JSON-array file unrolled by the kernel, where the kernel is and the array is plain.

    The kernel takes strict RFC 8259 arrays only; anything else (NaN, deep nesting, broken
    text) returns None, and `array_chunk` decides as it always has.
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


def array_chunk(data: bytes) -> LineChunk | None:
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


def cap_elements(chunk: LineChunk, limits: InputLimits) -> LineChunk:
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
    reasons = too_large(over, np.zeros(len(over), dtype=bool))
    table = chunk.table.set_column(1, "raw", large_strings(texts))
    return LineChunk(table.set_column(2, "line_reason", reasons), chunk.lines)
