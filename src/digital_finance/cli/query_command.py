"""`digital-finance query`: one read-only SELECT over the tables, printed or written to a file."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from digital_finance.cli.console import console, fail
from digital_finance.lakehouse.storage import StorageError, location


def run_query(sql: str, root: str, out: Path | None, as_of: int | None, limit: int) -> None:
    """Run `sql` with every table registered; print or write the result."""
    from digital_finance.config import ConfigError, load_config
    from digital_finance.lakehouse.read_only import (
        QueryRefusedError,
        read_only_connection,
        run_select,
    )

    try:
        # storage options and their secrets from the environment (docs/STORAGE.md)
        config = load_config(None)
        where = location(root, config.plain_storage_options())
    except (StorageError, ConfigError) as exc:
        fail(str(exc))
    if where.is_local and not where.path.exists():
        fail(f"{root} does not exist; run `digital-finance run` first or pass --output")
    if out is not None and where.is_local and out.resolve().is_relative_to(where.path.resolve()):
        fail(f"--out {out} is inside the lakehouse {root}; write the result somewhere else")
    try:
        with read_only_connection(
            where, as_of, memory_limit=config.memory_limit, threads=config.threads
        ) as (con, names):
            result = run_select(con, sql, names, limit=None if out is not None else limit)
    except QueryRefusedError as exc:
        fail(str(exc))
    if out is not None:
        from digital_finance.sinks.export import write_file

        write_file(result, out)
        console.print(f"wrote {out}")
        return
    table = Table()
    for col in result.column_names:
        table.add_column(col)
    # by position: a result may repeat a column name
    for row in zip(*(col.to_pylist() for col in result.columns), strict=True):
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)
