"""The `_system` tables on the embedded engine: batch plans and the run log."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa

from digital_finance.engines.embedded import delta_io
from digital_finance.engines.embedded.arrow_schemas import UTC_TS
from digital_finance.lakehouse.layout import TABLES
from digital_finance.runs.plan import Batch, PlannedFile
from digital_finance.runs.report import BatchReport
from digital_finance.sources.discovery import InputFile

BATCHES_SCHEMA = pa.schema(
    [
        ("batch_id", pa.int64()),
        ("run_id", pa.string()),
        ("planned_at", UTC_TS),
        ("dataset", pa.string()),
        ("file_ordinal", pa.int64()),
        ("path", pa.string()),
        ("size", pa.int64()),
        ("modified_ns", pa.int64()),
    ]
)

RULE = pa.struct(
    [
        ("dataset", pa.string()),
        ("rule", pa.string()),
        ("action", pa.string()),
        ("failures", pa.int64()),
    ]
)
COUNT = pa.struct([("name", pa.string()), ("value", pa.int64())])
RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("batch_id", pa.int64()),
        ("engine", pa.string()),
        ("status", pa.string()),
        ("started_at", UTC_TS),
        ("finished_at", UTC_TS),
        ("source_tz", pa.string()),
        ("files", pa.int64()),
        ("resumed", pa.bool_()),
        ("counts", pa.list_(COUNT)),
        ("rules", pa.list_(RULE)),
        ("integrity_warnings", pa.int64()),
        ("error", pa.string()),
    ]
)


def planned_files(root: Path) -> tuple[list[tuple[int, PlannedFile]], set[int]]:
    """Every planned file with its batch id, and the ids of batches that succeeded."""
    planned: list[tuple[int, PlannedFile]] = []
    batches = delta_io.read_table(root, TABLES.batches)
    if batches is not None:
        for row in batches.to_pylist():
            file = InputFile(row["path"], row["size"], row["modified_ns"])
            planned.append(
                (row["batch_id"], PlannedFile(row["dataset"], row["file_ordinal"], file))
            )
    succeeded: set[int] = set()
    runs = delta_io.read_table(root, TABLES.runs)
    if runs is not None:
        for row in runs.select(["batch_id", "status"]).to_pylist():
            if row["status"] == "succeeded":
                succeeded.add(row["batch_id"])
    return planned, succeeded


def commit_plan(root: Path, batch: Batch, run_id: str, now: datetime) -> None:
    """Record the batch's files before any data table is written (the write-ahead step)."""
    rows = [
        {
            "batch_id": batch.batch_id,
            "run_id": run_id,
            "planned_at": now,
            "dataset": pf.dataset,
            "file_ordinal": pf.ordinal,
            "path": pf.file.path,
            "size": pf.file.size,
            "modified_ns": pf.file.modified_ns,
        }
        for pf in batch.files
    ]
    table = pa.Table.from_pylist(rows, schema=BATCHES_SCHEMA)
    delta_io.append(root, TABLES.batches, table.to_reader(), batch.batch_id)


def log_run(
    root: Path, report: BatchReport, started: datetime, finished: datetime, source_tz: str
) -> None:
    """Append the run's row to `_system/pipeline_runs`.

    A failed batch is logged without an app transaction, so that the retry that succeeds can
    still log its own row for the same batch id.
    """
    counts = [{"name": f"records.{k}", "value": v} for k, v in report.records.items()]
    counts += [{"name": f"written.{k}", "value": v} for k, v in report.written.items()]
    counts.append({"name": "reference_rows", "value": report.reference_rows})
    row = {
        "run_id": report.run_id,
        "batch_id": report.batch_id,
        "engine": "embedded",
        "status": report.status,
        "started_at": started,
        "finished_at": finished,
        "source_tz": source_tz,
        "files": report.files,
        "resumed": report.resumed,
        "counts": counts,
        "rules": [
            {"dataset": r.dataset, "rule": r.rule, "action": r.action, "failures": r.failures}
            for r in report.rules
        ],
        "integrity_warnings": report.integrity_warnings,
        "error": report.error,
    }
    table = pa.Table.from_pylist([row], schema=RUNS_SCHEMA)
    if report.status == "succeeded":
        delta_io.append(root, TABLES.runs, table.to_reader(), report.batch_id)
    else:
        from deltalake import write_deltalake

        write_deltalake(str(root / TABLES.runs), table, mode="append", schema_mode="merge")
