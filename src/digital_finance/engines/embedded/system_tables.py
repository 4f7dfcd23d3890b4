"""The `_system` tables on the embedded engine: batch plans and the run log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from digital_finance.engines.embedded import delta_io, delta_reads
from digital_finance.lakehouse import system_rows
from digital_finance.lakehouse.layout import TABLES
from digital_finance.lakehouse.storage import Location
from digital_finance.runs.plan import Batch, BatchClaimError, History
from digital_finance.runs.report import BatchReport


def history(root: Location) -> History:
    """What `_system` says of the batches so far (`system_rows.history`)."""
    return system_rows.history(
        delta_reads.read_table(root, TABLES.batches),
        delta_reads.read_table(root, TABLES.runs),
        delta_reads.read_table(root, TABLES.forgotten),
    )


def forget(root: Location, paths: list[str], up_to_batch: int, when: datetime) -> None:
    """Record that these paths' parts so far count as never read (no app transaction)."""
    from deltalake import write_deltalake

    where = root.child(TABLES.forgotten)
    rows = system_rows.forgotten_rows(paths, up_to_batch, when)
    write_deltalake(
        where.uri,
        rows,
        mode="append",
        storage_options=where.storage_options,
        post_commithook_properties=delta_io.post_commit(),
    )


def commit_plan(root: Location, batch: Batch, run_id: str, now: datetime) -> None:
    """Record the batch's files before any data table is written (the write-ahead step)."""
    table = system_rows.plan_rows(batch, run_id, now)
    # the plan's app transaction is the claim: delta-rs re-checks it inside the commit
    if not delta_io.append(root, TABLES.batches, table.to_reader(), batch.batch_id):
        raise BatchClaimError(batch.batch_id)


def log_abandoned(
    root: Location, batch_id: int, status: str, account: str, when: datetime, engine: str
) -> None:
    """An abandon's row in `_system/pipeline_runs` (no app transaction: a log row)."""
    _append_log_row(root, system_rows.abandoned_row(batch_id, status, account, when, engine))


def _append_log_row(root: Location, table: Any) -> None:
    from deltalake import write_deltalake

    where = root.child(TABLES.runs)
    dt = delta_io.open_table(root, TABLES.runs)  # kept by this thread: no second open
    write_deltalake(
        dt if dt is not None else where.uri,
        table,
        mode="append",
        schema_mode="merge",
        storage_options=where.storage_options,
        post_commithook_properties=delta_io.post_commit(),
    )


def log_run(
    root: Location, report: BatchReport, started: datetime, finished: datetime, source_tz: str
) -> None:
    """Append the run's row to `_system/pipeline_runs` (`system_rows.run_log_claim`)."""
    table = system_rows.run_row(report, started, finished, source_tz, "embedded")
    claim = system_rows.run_log_claim(report)
    if claim is not None:
        delta_io.append(root, TABLES.runs, table.to_reader(), claim)
    else:
        _append_log_row(root, table)
