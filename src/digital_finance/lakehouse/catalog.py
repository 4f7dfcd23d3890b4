"""Read access to the lakehouse for listing and SQL, through `deltalake`'s Arrow datasets.

DuckDB's own `delta` extension downloads itself at run time, which fails offline, so tables
reach DuckDB as Arrow datasets instead (with column projection and filter push-down).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from digital_finance.definition.rules import duckdb_quote as quote_ident
from digital_finance.lakehouse.layout import TABLES
from digital_finance.lakehouse.storage import Location


@dataclass(frozen=True)
class TableInfo:
    """What `tables` shows for one table."""

    version: int
    rows: int
    updated_ms: int


def table_info(root: Location, name: str) -> TableInfo | None:
    """Version, row count (from the log's file statistics) and last commit time."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    where = root.child(name)
    try:
        dt = DeltaTable(where.uri, storage_options=where.storage_options)
    except TableNotFoundError:
        return None
    from digital_finance.engines.embedded.delta_reads import table_rows

    rows = table_rows(dt)
    last = dt.history(1)[0]
    return TableInfo(dt.version(), int(rows), int(last.get("timestamp", 0)))


def existing_tables(root: Location) -> dict[str, TableInfo]:
    """Every table that exists, by its name (`silver/stocks`), in the layout's order."""
    found = {}
    for name in TABLES.all():
        info = table_info(root, name)
        if info is not None:
            found[name] = info
    return found


def register_tables(con: Any, root: Location, as_of: int | None = None) -> list[str]:
    """Make every existing table visible to DuckDB as schema.table; returns their names."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from digital_finance.engines.embedded import delta_reads

    names = []
    for name in TABLES.every():
        where = root.child(name)
        try:
            dt = DeltaTable(where.uri, version=as_of, storage_options=where.storage_options)
        except TableNotFoundError:
            continue
        except Exception as exc:  # a version the table never had
            raise ValueError(f"{name} has no version {as_of}: {exc}") from exc
        schema, table = name.split("/", 1)
        # names come from the layout, not from a caller; quoted all the same
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        view = f"_t_{schema}_{table}"
        # Arrow, not DuckDB's file reader: a query's connection may open no file itself
        con.register(view, delta_reads.arrow_dataset(dt))
        con.execute(
            f"CREATE OR REPLACE VIEW {quote_ident(schema)}.{quote_ident(table)} "
            f"AS SELECT * FROM {quote_ident(view)}"
        )
        names.append(f"{schema}.{table}")
    return names
