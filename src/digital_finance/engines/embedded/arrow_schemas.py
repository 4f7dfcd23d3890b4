"""Arrow types of the lakehouse tables on the embedded engine, derived from the contract."""

from __future__ import annotations

import pyarrow as pa

from digital_finance.contract.schemas import FieldKind, FieldSpec

UTC_TS = pa.timestamp("us", tz="UTC")


def sql_type(f: FieldSpec) -> str:
    """The DuckDB type of one contract field."""
    if f.kind is FieldKind.INTEGER:
        return "BIGINT"
    if f.kind is FieldKind.DECIMAL:
        return f"DECIMAL({f.precision},{f.scale})"
    if f.kind is FieldKind.EVENT_TIME:
        return "TIMESTAMP"
    return "VARCHAR"
