"""Small Arrow arrays and tables, built without `pyarrow.array`.

`pyarrow.array` (and `from_pylist`, `scalar`, …) checks its argument against pandas types,
and on its first call imports pandas when pandas is installed: a third of a second of one
core, on every run, for nothing the embedded engine needs. The embedded path builds its
arrays here instead, from buffers, and its small tables through Arrow's JSON reader with an
explicit schema. `tests/unit/test_arrow_arrays.py` checks that a run imports no pandas.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa


def int_array(values: npt.ArrayLike, type_: pa.DataType) -> pa.Array:
    """An int32 or int64 array of `values`, without nulls."""
    import numpy as np
    import pyarrow as pa

    dtype = {pa.int32(): np.int32, pa.int64(): np.int64}[type_]
    data = np.ascontiguousarray(values, dtype=dtype)
    return pa.Array.from_buffers(type_, len(data), [None, pa.py_buffer(data)])


def constant_int32(value: int, length: int) -> pa.Array:
    """`length` times the same int32."""
    import numpy as np
    import pyarrow as pa

    return int_array(np.full(length, value, dtype=np.int32), pa.int32())


def bool_array(values: npt.ArrayLike) -> pa.Array:
    """A boolean array of `values`, without nulls."""
    import numpy as np
    import pyarrow as pa

    flags = np.ascontiguousarray(values, dtype=bool)
    bits = np.packbits(flags, bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(flags), [None, pa.py_buffer(bits)])


def all_true(length: int) -> pa.Array:
    """`length` times True."""
    import pyarrow as pa

    bits = pa.py_buffer(b"\xff" * (length // 8 + 1))
    return pa.Array.from_buffers(pa.bool_(), length, [None, bits])


def all_false(length: int) -> pa.Array:
    """`length` times False."""
    import pyarrow as pa

    bits = pa.py_buffer(bytes(length // 8 + 1))
    return pa.Array.from_buffers(pa.bool_(), length, [None, bits])


def bool_bytes(flags: pa.Array) -> npt.NDArray[np.uint8] | None:
    """One byte per value of a boolean array without nulls, or None when all are true."""
    import numpy as np

    if flags.false_count == 0:
        return None
    bits = np.frombuffer(flags.buffers()[1], dtype=np.uint8)
    unpacked = np.unpackbits(bits, bitorder="little")
    return np.ascontiguousarray(unpacked[flags.offset : flags.offset + len(flags)])


def large_strings(values: Sequence[str]) -> pa.Array:
    """A large_string array of `values`, without nulls."""
    import pyarrow as pa

    offsets, data = _text_buffers(values, "int64")
    return pa.LargeStringArray.from_buffers(len(values), offsets, data)


def _text_buffers(values: Sequence[str], offset_type: str) -> tuple[pa.Buffer, pa.Buffer]:
    import numpy as np
    import pyarrow as pa

    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=offset_type)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))


def large_binaries(values: Sequence[bytes]) -> pa.Array:
    """A large_binary array of `values`, without nulls."""
    import numpy as np
    import pyarrow as pa

    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in values], out=offsets[1:])
    data = pa.py_buffer(b"".join(values))
    return pa.Array.from_buffers(
        pa.large_binary(), len(values), [None, pa.py_buffer(offsets), data]
    )


def strings(values: Sequence[str]) -> pa.Array:
    """A string array of `values`, without nulls (built from its buffers: a cast imports
    pyarrow.compute, 80 ms with the interpreter held)."""
    import pyarrow as pa

    offsets, data = _text_buffers(values, "int32")
    if data.size >= 2**31:
        raise ValueError("over 2 GiB of text: a string array cannot hold it")
    return pa.StringArray.from_buffers(len(values), offsets, data)


def table_from_rows(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """A small table of JSON-able rows, typed exactly by `schema`.

    Datetimes must be given as ISO-8601 text; nested lists and structs are fine.
    """
    import io

    import pyarrow as pa
    import pyarrow.json as pa_json

    if not rows:
        return schema.empty_table()
    text = "\n".join(json.dumps(row) for row in rows).encode("utf-8")
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    table = pa_json.read_json(io.BytesIO(text), parse_options=options)
    return pa.Table.from_batches(table.select(schema.names).to_batches(), schema=schema)


def coded_strings(length: int, codes: Sequence[tuple[npt.NDArray[np.bool_], str]]) -> pa.Array:
    """A string array of `length`: null, or the code of the last mask that holds the row.

    Built from buffers: `pa.array` and `pa.scalar` import pandas on first use (a quarter
    of a second), which the reader must not pay on its first bad line.
    """
    import numpy as np
    import pyarrow as pa

    which = np.zeros(length, dtype=np.int8)
    texts = [b""]
    for number, (mask, code) in enumerate(codes, start=1):
        which[mask] = number
        texts.append(code.encode("utf-8"))
    sizes = np.array([len(t) for t in texts], dtype=np.int32)[which]
    offsets = np.zeros(length + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    data = b"".join(texts[i] for i in which[which > 0].tolist())
    valid = np.packbits(which > 0, bitorder="little")
    buffers = [pa.py_buffer(valid), pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), length, buffers)
