"""Arrow types of the lakehouse tables on the embedded engine, derived from the contract."""

from __future__ import annotations

import pyarrow as pa

from digital_finance.contract.schemas import DatasetSpec, FieldKind, FieldSpec

UTC_TS = pa.timestamp("us", tz="UTC")


def field_type(f: FieldSpec) -> pa.DataType:
    """The stored type of one contract field."""
    if f.kind is FieldKind.INTEGER:
        return pa.int64()
    if f.kind is FieldKind.DECIMAL:
        return pa.decimal128(f.precision, f.scale)
    if f.kind is FieldKind.EVENT_TIME:
        return UTC_TS
    return pa.string()


def typed_schema(spec: DatasetSpec) -> pa.Schema:
    """The typed columns of a dataset (silver without its lineage columns)."""
    return pa.schema([pa.field(f.silver_name, field_type(f)) for f in spec.fields])


def sql_type(f: FieldSpec) -> str:
    """The DuckDB type of one contract field."""
    if f.kind is FieldKind.INTEGER:
        return "BIGINT"
    if f.kind is FieldKind.DECIMAL:
        return f"DECIMAL({f.precision},{f.scale})"
    if f.kind is FieldKind.EVENT_TIME:
        return "TIMESTAMP"
    return "VARCHAR"
