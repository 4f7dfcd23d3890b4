"""Table maintenance: compact small files, checkpoint the log, clean up what has expired.

Every batch appends a file to bronze, quarantine and the `_system` tables and a version to
every table it writes, so a stream with a 1 s trigger makes tens of thousands of each a day.
Reading a table (its snapshot, then its files) costs in proportion to both, so a lakehouse
that is never maintained gets slower batch after batch. `maintain` brings each table back:

- **compaction**: when a table holds at least `min_small_files` files under
  `small_file_bytes`, the oldest are rewritten into a file of about `target_file_bytes`, a
  step at a time (`engines.embedded.compaction`: a commit that changes no row), until too
  few small files are left; tables DuckDB cannot read exactly, or not local, are compacted
  by delta-rs's `optimize.compact` in one go;
- **checkpoint**: a checkpoint of the newest version, so opening the table reads one
  Parquet file and the few JSON commits after it, not every commit since the last one;
- **log clean-up**: commit files older than the table's `delta.logRetentionDuration`
  (30 days by default) that a checkpoint covers are removed;
- **vacuum** (only when `vacuum_retention_hours` is set): data files no longer in the table
  and older than the retention are deleted, which also ends time travel to before then.

What changes a table (a compaction's commit, delta-rs's compaction, vacuum) runs inside
`locked`, which the caller makes the lakehouse's commit lock, so it never meets a batch
half-way; `digital-finance maintain` holds the lock for the whole pass. A stream maintains
beside its own batches (`streaming.upkeep`): there `locked` takes the lock for each commit
only, and the rewriting and the checkpoints, which change nothing a writer reads, run
outside it. A compaction keeps every row, the tables' app transactions (so batches already
committed stay skipped) and the protocol, so either engine keeps reading and writing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

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


Locked = Callable[[], AbstractContextManager[object]]


def maintain(
    root: Location,
    policy: MaintenancePolicy | None = None,
    locked: Locked = contextlib.nullcontext,
    stop: Callable[[], bool] = lambda: False,
    before_vacuum: Callable[[], None] = lambda: None,
) -> MaintenanceReport:
    """Maintain every table of the lakehouse; `locked()` holds the commit lock (the default
    is for a caller that holds it already). `stop()` ends the pass between steps;
    `before_vacuum()`, called under the lock, may refuse a vacuum by raising."""
    policy = policy or MaintenancePolicy()
    started = time.perf_counter()
    report = MaintenanceReport()
    for table in TABLES.all():
        if stop():
            break
        done = _maintain_table(root, table, policy, locked, stop, before_vacuum)
        if done is not None:
            report.tables.append(done)
    report.seconds = time.perf_counter() - started
    return report


def _maintain_table(
    root: Location,
    table: str,
    policy: MaintenancePolicy,
    locked: Locked,
    stop: Callable[[], bool],
    before_vacuum: Callable[[], None],
) -> TableMaintained | None:
    from digital_finance.engines.embedded import compaction, delta_io, delta_reads

    where = root.child(table)
    dt = delta_io.open_table(root, table)
    if dt is None:
        return None
    sizes = compaction.table_files(dt)
    done = TableMaintained(table, len(sizes), len(sizes))
    if where.is_local and delta_reads.is_plain(dt):
        done.compacted = _compact_in_steps(root, table, policy, locked, stop)
    elif sum(1 for s in sizes if s < policy.small_file_bytes) >= policy.min_small_files:
        with locked():
            dt.update_incremental()
            metrics = dt.optimize.compact(target_size=policy.target_file_bytes)
        done.compacted = int(metrics.get("numFilesRemoved", 0)) > 0
    if done.compacted:
        dt.update_incremental()
        done.files_after = len(compaction.table_files(dt))
        log.info("compacted %s: %d files into %d", table, done.files_before, done.files_after)
    # a checkpoint describes a version that exists and changes nothing a writer reads: it
    # needs no lock, whatever commits meanwhile
    if policy.checkpoint and _last_checkpoint(where) < dt.version():
        dt.create_checkpoint()
        dt.cleanup_metadata()  # commits past the log retention that the checkpoint covers
        done.checkpointed = True
    if policy.vacuum_retention_hours is not None:
        with locked():
            before_vacuum()
            dt.update_incremental()
            removed = dt.vacuum(
                retention_hours=policy.vacuum_retention_hours,
                dry_run=False,
                enforce_retention_duration=False,
            )
        done.vacuumed_files = len(removed)
    return done


def _compact_in_steps(
    root: Location, table: str, policy: MaintenancePolicy, locked: Locked, stop: Callable[[], bool]
) -> bool:
    """Rewrite the table's small files a bounded step at a time; whether any step landed."""
    from digital_finance.engines.embedded import compaction, delta_io

    landed = False
    while not stop():
        dt = delta_io.open_table(root, table)
        if dt is None:
            break
        step = compaction.plan(
            dt, table, policy.small_file_bytes, policy.min_small_files, policy.target_file_bytes
        )
        if step is None:
            break
        with compaction.rewriting(root, step, dt) as rewritten, locked():
            latest = delta_io.open_table(root, table)
            swapped = latest is not None and compaction.swap(root, rewritten, latest)
        if not swapped:  # a writer replaced a planned file meanwhile: the next pass retries
            log.info("compaction of %s gave way to a writer", table)
            break
        landed = True
    return landed


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
