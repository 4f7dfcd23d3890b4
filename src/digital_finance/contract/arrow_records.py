"""The contract applied to a chunk of raw lines, giving typed Arrow columns.

This is the reference (`contract.reference.check_record`) run record by record and gathered
into one Arrow batch: exact by construction, engine-free, and small enough to ship to a Spark
worker. An engine that has a faster way of its own (the embedded engine compiles the contract
to one DuckDB query) is tested against the same reference.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from digital_finance.contract import reference
from digital_finance.contract.schemas import RECORD_TOO_LARGE, DatasetSpec, FieldKind, FieldSpec

if TYPE_CHECKING:
    import pyarrow as pa

_BLANK = re.compile(r"[ \t\r\n]*")


def arrow_type(f: FieldSpec) -> pa.DataType:
    """The Arrow type of one contract field in silver."""
    import pyarrow as pa

    if f.kind is FieldKind.INTEGER:
        return pa.int64()
    if f.kind is FieldKind.DECIMAL:
        return pa.decimal128(f.precision, f.scale)
    if f.kind is FieldKind.EVENT_TIME:
        return pa.timestamp("us", tz="UTC")
    return pa.string()


def checked_schema(spec: DatasetSpec) -> pa.Schema:
    """Columns of a checked chunk: where the record came from, its verdict and its values."""
    import pyarrow as pa

    return pa.schema(
        [
            ("file_ordinal", pa.int32()),
            ("line_number", pa.int64()),
            ("raw", pa.string()),
            ("reasons", pa.list_(pa.string())),
            *((f.silver_name, arrow_type(f)) for f in spec.fields),
            ("_rescued", pa.string()),
            ("by_reference", pa.bool_()),  # decided by the reference, not a compiled path
        ]
    )


def check_lines(lines: pa.Table, file_ordinal: int, spec: DatasetSpec, tz: str) -> pa.RecordBatch:
    """Check every non-blank line of `lines` (`line_number`, `raw`, `line_reason`).

    Blank lines are ignored, as the contract says. A line that is not UTF-8 has already been
    replaced by an escaped copy by the file reader and is rejected as `invalid_utf8`.
    """
    import pyarrow as pa

    schema = checked_schema(spec)
    columns: dict[str, list[object]] = {name: [] for name in schema.names}
    values = [columns[f.silver_name] for f in spec.fields]
    numbers = lines.column("line_number").to_pylist()
    texts = lines.column("raw").to_pylist()
    found = lines.column("line_reason").to_pylist()
    for line, raw, line_reason in zip(numbers, texts, found, strict=True):
        if line_reason != RECORD_TOO_LARGE and _BLANK.fullmatch(raw):
            continue
        columns["line_number"].append(line)
        columns["raw"].append(raw)
        verdict = (
            reference.check_record(raw, spec, tz)
            if line_reason is None
            else reference.Rejected((line_reason,))
        )
        if isinstance(verdict, reference.Rejected):
            columns["reasons"].append(list(verdict.reasons))
            columns["_rescued"].append(None)
            for column in values:
                column.append(None)
        else:
            columns["reasons"].append([])
            columns["_rescued"].append(verdict.rescued)
            for f, column in zip(spec.fields, values, strict=True):
                column.append(verdict.values.get(f.silver_name))
    columns["file_ordinal"] = [file_ordinal] * len(columns["raw"])
    columns["by_reference"] = [True] * len(columns["raw"])
    return pa.RecordBatch.from_pydict(columns, schema=schema)
