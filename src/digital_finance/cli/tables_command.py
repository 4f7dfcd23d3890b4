"""`digital-finance tables`: each table's version, row count and last update."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.table import Table

from digital_finance.cli.console import console, fail
from digital_finance.lakehouse.layout import TABLES
from digital_finance.lakehouse.storage import StorageError, location


def list_tables(root: str) -> None:
    """Print the table list."""
    from digital_finance.config import ConfigError, load_config
    from digital_finance.lakehouse.catalog import table_info

    try:
        # storage options and their secrets from the environment (docs/STORAGE.md)
        where = location(root, load_config(None).plain_storage_options())
    except (StorageError, ConfigError) as exc:
        fail(str(exc))
    if where.is_local and not where.path.exists():
        fail(f"{root} does not exist; run `digital-finance run` first or pass --output")
    table = Table(title=f"tables under {root}", title_justify="left")
    for col in ("table", "version", "rows", "last update (UTC)"):
        table.add_column(col, justify="right" if col in ("version", "rows") else "left")
    for name in TABLES.all():
        info = table_info(where, name)
        if info is None:
            table.add_row(name, "-", "-", "not created yet")
            continue
        updated = datetime.fromtimestamp(info.updated_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(name, str(info.version), f"{info.rows:,}", updated)
    console.print(table)
    from digital_finance.runs.abandon import unfinished_batch, unfinished_note

    unfinished = unfinished_batch(where)
    if unfinished is not None:
        console.print(unfinished_note(unfinished), markup=False)
