"""`digital-finance maintain`: compact, checkpoint and clean every table, and say what changed."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from digital_finance.cli.console import console, fail


def maintain_tables(root: str, config_path: Path | None, vacuum_hours: int | None) -> None:
    """Maintain the lakehouse under the commit lock and print a line per table."""
    from dataclasses import replace

    from digital_finance.api import Lakehouse
    from digital_finance.config import ConfigError, load_config
    from digital_finance.errors import TerminalError
    from digital_finance.lakehouse.storage import StorageError, location

    try:
        config = load_config(config_path)
        where = location(root, config.plain_storage_options())
    except (ConfigError, StorageError) as exc:
        fail(str(exc))
    if where.is_local and not (where.path / "_system").exists():
        fail(f"{root} holds no lakehouse; pass the lakehouse with --output")
    policy = config.maintenance
    if vacuum_hours is not None:
        if vacuum_hours < 1:
            # files compaction replaces in the same pass would go at once, under readers
            # (queries, time travel, another writer's plan) that hold the version before
            fail("--vacuum-hours must be 1 or more")
        policy = replace(policy, vacuum_retention_hours=vacuum_hours)
    try:
        report = Lakehouse(where, config).maintain(policy)
    except TerminalError as exc:
        fail(str(exc))
    table = Table(title=f"maintenance of {root} in {report.seconds:.2f} s", title_justify="left")
    for col in ("table", "files", "after", "compacted", "checkpoint", "vacuumed"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for t in report.tables:
        table.add_row(
            t.table,
            f"{t.files_before:,}",
            f"{t.files_after:,}",
            "yes" if t.compacted else "-",
            "yes" if t.checkpointed else "-",
            f"{t.vacuumed_files:,}" if policy.vacuum_retention_hours is not None else "-",
        )
    console.print(table)
    if policy.vacuum_retention_hours is None:
        console.print(
            "no vacuum: files replaced by compaction stay on disk for time travel "
            "(--vacuum-hours N deletes those older than N hours)",
            markup=False,
        )
