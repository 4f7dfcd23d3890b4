"""`digital-finance query`: SQL over the tables, printed or written to a file."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.table import Table

from digital_finance.cli.console import console, fail
from digital_finance.lakehouse.storage import StorageError, location


def run_query(sql: str, root: str, out: Path | None, as_of: int | None, limit: int) -> None:
    """Run `sql` with every table registered; print or write the result."""
    import duckdb

    from digital_finance.config import ConfigError, load_config
    from digital_finance.lakehouse.catalog import register_tables

    try:
        # storage options and their secrets from the environment (docs/STORAGE.md)
        where = location(root, load_config(None).plain_storage_options())
    except (StorageError, ConfigError) as exc:
        fail(str(exc))
    if where.is_local and not where.path.exists():
        fail(f"{root} does not exist; run `digital-finance run` first or pass --output")
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    # a query larger than memory spills to the system's temp folder, not to `./.tmp`
    spill = Path(tempfile.gettempdir()) / "digital-finance-query"
    con.execute("SET temp_directory = ?", [str(spill)])
    try:
        names = register_tables(con, where, as_of)
    except ValueError as exc:
        fail(str(exc))
    try:
        relation = con.sql(sql)
    except duckdb.Error as exc:
        fail(f"{exc}\navailable tables: {', '.join(names)}")
    if relation is None:
        fail("the statement returned no rows; use a SELECT")
    if out is not None:
        from digital_finance.sinks.export import write_file

        write_file(relation.to_arrow_table(), out)
        console.print(f"wrote {out}")
        return
    result = relation.limit(limit).fetchall()
    table = Table()
    for col in relation.columns:
        table.add_column(col)
    for row in result:
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)
