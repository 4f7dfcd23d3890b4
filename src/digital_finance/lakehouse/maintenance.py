"""Table maintenance: compact small files, checkpoint the log, clean up what has expired.

Every batch appends a file to bronze, quarantine and the `_system` tables and a version to
every table it writes, so a stream with a 1 s trigger makes tens of thousands of each a day.
Reading a table (its snapshot, then its files) costs in proportion to both, so a lakehouse
that is never maintained gets slower batch after batch. `maintain` brings each table back:

- **compaction**: when a table holds at least `min_small_files` files under
  `small_file_bytes`, they are rewritten into files of about `target_file_bytes`
  (delta-rs's `optimize.compact`, a commit that changes no row);
- **checkpoint**: a checkpoint of the newest version, so opening the table reads one
  Parquet file and the few JSON commits after it, not every commit since the last one;
- **log clean-up**: commit files older than the table's `delta.logRetentionDuration`
  (30 days by default) that a checkpoint covers are removed;
- **vacuum** (only when `vacuum_retention_hours` is set): data files no longer in the table
  and older than the retention are deleted, which also ends time travel to before then.

It runs under the lakehouse's commit lock, like every data-table write, so it never meets a
batch half-way; a compaction keeps every row, the tables' app transactions (so batches
already committed stay skipped) and the protocol, so either engine keeps reading and writing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from digital_finance.lakehouse.layout import TABLES
from digital_finance.lakehouse.storage import Location

log = logging.getLogger(__name__)

MIB = 1024 * 1024


@dataclass(frozen=True)
class MaintenancePolicy:
    """When and how tables are maintained (`[maintenance]` in the config file)."""

    small_file_bytes: int = 32 * MIB
    min_small_files: int = 16
    target_file_bytes: int = 128 * MIB
    checkpoint: bool = True
    vacuum_retention_hours: int | None = None  # None: no vacuum (time travel kept)


@dataclass
class TableMaintained:
    """What maintenance did to one table."""

    table: str
    files_before: int
    files_after: int
    compacted: bool = False
    checkpointed: bool = False
    vacuumed_files: int = 0


@dataclass
class MaintenanceReport:
    """What one maintenance pass did, table by table."""

    tables: list[TableMaintained] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> list[TableMaintained]:
        """The tables it changed."""
        return [t for t in self.tables if t.compacted or t.checkpointed or t.vacuumed_files]


def maintain(root: Location, policy: MaintenancePolicy | None = None) -> MaintenanceReport:
    """Maintain every table of the lakehouse; the caller holds the commit lock."""
    policy = policy or MaintenancePolicy()
    started = time.perf_counter()
    report = MaintenanceReport()
    for table in TABLES.all():
        done = _maintain_table(root, table, policy)
        if done is not None:
            report.tables.append(done)
    report.seconds = time.perf_counter() - started
    return report


def _maintain_table(
    root: Location, table: str, policy: MaintenancePolicy
) -> TableMaintained | None:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    where = root.child(table)
    try:
        dt = DeltaTable(where.uri, storage_options=where.storage_options)
    except TableNotFoundError:
        return None
    sizes = _file_sizes(dt)
    done = TableMaintained(table, len(sizes), len(sizes))
    small = sum(1 for s in sizes if s < policy.small_file_bytes)
    if small >= policy.min_small_files:
        metrics = dt.optimize.compact(target_size=policy.target_file_bytes)
        done.compacted = int(metrics.get("numFilesRemoved", 0)) > 0
        dt.update_incremental()
        done.files_after = len(_file_sizes(dt))
        log.info("compacted %s: %d files into %d", table, done.files_before, done.files_after)
    if policy.checkpoint and _last_checkpoint(where) < dt.version():
        dt.create_checkpoint()
        dt.cleanup_metadata()  # commits past the log retention that the checkpoint covers
        done.checkpointed = True
    if policy.vacuum_retention_hours is not None:
        removed = dt.vacuum(
            retention_hours=policy.vacuum_retention_hours,
            dry_run=False,
            enforce_retention_duration=False,
        )
        done.vacuumed_files = len(removed)
    return done


def _file_sizes(dt: Any) -> list[int]:
    actions = dt.get_add_actions(flatten=True)
    if not len(actions):
        return []
    return [int(v) for v in actions.column("size_bytes").to_pylist()]


def _last_checkpoint(table: Location) -> int:
    """The version of the table's newest checkpoint (-1 when it has none)."""
    import json

    try:
        if table.is_local:
            raw = (table.path / "_delta_log" / "_last_checkpoint").read_bytes()
        else:
            import obstore

            raw = bytes(obstore.get(table.store(), "_delta_log/_last_checkpoint").bytes())
        return int(json.loads(raw)["version"])
    except (FileNotFoundError, ValueError, KeyError):
        return -1
