"""DuckDB types of the contract's fields on the embedded engine."""

from __future__ import annotations

from digital_finance.contract.schemas import FieldKind, FieldSpec


def sql_type(f: FieldSpec) -> str:
    """The DuckDB type of one contract field."""
    if f.kind is FieldKind.INTEGER:
        return "BIGINT"
    if f.kind is FieldKind.DECIMAL:
        return f"DECIMAL({f.precision},{f.scale})"
    if f.kind is FieldKind.EVENT_TIME:
        return "TIMESTAMP"
    return "VARCHAR"
