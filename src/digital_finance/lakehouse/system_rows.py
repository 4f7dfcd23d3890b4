"""Rows of the `_system` tables, as Arrow, for every engine.

`_system/batches` is the write-ahead plan of each batch; `_system/pipeline_runs` is the run
log. Both engines write the same rows with the same schema, so a lakehouse can be continued by
either and planned the same way (`runs.plan.plan_run`).
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from digital_finance.arrow_arrays import table_from_rows
from digital_finance.runs.plan import Batch, History, PlannedFile
from digital_finance.runs.report import BatchReport
from digital_finance.sources.discovery import InputFile

UTC_TS = pa.timestamp("us", tz="UTC")
ABANDONED = "abandoned"  # the run-log status of a batch given up (`runs.abandon`)
ABANDONING = "abandoning"  # written first: an abandon under way, or cut short

BATCHES_SCHEMA = pa.schema(
    [
        ("batch_id", pa.int64()),
        ("run_id", pa.string()),
        ("planned_at", UTC_TS),
        ("dataset", pa.string()),
        ("file_ordinal", pa.int64()),
        ("path", pa.string()),
        ("size", pa.int64()),  # the end of the part: the file's size when it was listed
        ("modified_ns", pa.int64()),
        ("start_byte", pa.int64()),  # the part is bytes [start_byte, size) of the file
        ("first_line", pa.int64()),  # line number of the part's first line
        ("sha256", pa.string()),  # of the file's bytes [0, size)
        ("source", pa.string()),  # the kind of source (`file`); `path` is its partition
    ]
)

FORGOTTEN_SCHEMA = pa.schema(
    [("path", pa.string()), ("up_to_batch", pa.int64()), ("forgotten_at", UTC_TS)]
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


def history(
    batches: pa.Table | None, runs: pa.Table | None, forgotten: pa.Table | None = None
) -> History:
    """Every planned file with its batch id; the batches that succeeded, those abandoned
    (`batch abandon`), and the paths forgotten (`forget`) up to which batch."""
    planned: list[tuple[int, PlannedFile]] = []
    if batches is not None:
        # only the columns read: a zoned time made into Python imports pandas (0.4 s)
        wanted = ["path", "size", "modified_ns", "dataset", "file_ordinal", "batch_id",
                  "start_byte", "first_line", "sha256", "source"]  # fmt: skip
        for row in batches.select([c for c in wanted if c in batches.column_names]).to_pylist():
            file = InputFile(row["path"], row["size"], row["modified_ns"])
            # rows planned before files were known by content lack the last three columns
            part = PlannedFile(
                row["dataset"],
                row["file_ordinal"],
                file,
                row.get("start_byte") or 0,
                row.get("first_line") or 1,
                row.get("sha256"),
                row.get("source") or "file",
            )
            planned.append((row["batch_id"], part))
    succeeded: set[int] = set()
    abandoned: set[int] = set()
    abandoning: set[int] = set()
    if runs is not None:
        for row in runs.select(["batch_id", "status"]).to_pylist():
            if row["status"] == "succeeded":
                succeeded.add(row["batch_id"])
            elif row["status"] == ABANDONED:
                abandoned.add(row["batch_id"])
            elif row["status"] == ABANDONING:
                abandoning.add(row["batch_id"])
    forgot: dict[str, int] = {}
    if forgotten is not None:
        for row in forgotten.select(["path", "up_to_batch"]).to_pylist():
            forgot[row["path"]] = max(forgot.get(row["path"], 0), row["up_to_batch"])
    return History(planned, succeeded, abandoned, forgot, abandoning - abandoned)


def forgotten_rows(paths: list[str], up_to_batch: int, when: datetime) -> pa.Table:
    """`_system/forgotten` rows: these paths' parts up to the batch count as never read."""
    rows = [{"path": p, "up_to_batch": up_to_batch, "forgotten_at": when.isoformat()}
            for p in paths]  # fmt: skip
    return table_from_rows(rows, FORGOTTEN_SCHEMA)


def plan_rows(batch: Batch, run_id: str, now: datetime) -> pa.Table:
    """The batch's files, written before any data table (the write-ahead step)."""
    rows = [
        {
            "batch_id": batch.batch_id,
            "run_id": run_id,
            "planned_at": now.isoformat(),
            "dataset": pf.dataset,
            "file_ordinal": pf.ordinal,
            "path": pf.file.path,
            "size": pf.file.size,
            "modified_ns": pf.file.modified_ns,
            "start_byte": pf.start,
            "first_line": pf.first_line,
            "sha256": pf.sha256,
            "source": pf.source,
        }
        for pf in batch.files
    ]
    return table_from_rows(rows, BATCHES_SCHEMA)


def abandoned_row(
    batch_id: int, status: str, account: str, when: datetime, engine: str
) -> pa.Table:
    """The run log's row of an abandon (`abandoning`, then `abandoned`, which closes it)."""
    report = BatchReport(batch_id, "abandon", status)
    report.error = account
    return run_row(report, when, when, "UTC", engine)


def run_log_claim(report: BatchReport) -> int | None:
    """The batch id a run-log row is committed under (its app transaction), or None.

    A succeeded batch's row carries the batch's transaction, so a resumed batch never logs
    twice; a failed batch's row carries none, so that the retry which succeeds can still log
    its own row for the same batch id.
    """
    return report.batch_id if report.status == "succeeded" else None


def run_row(
    report: BatchReport, started: datetime, finished: datetime, source_tz: str, engine: str
) -> pa.Table:
    """The run log's row for one batch."""
    counts = [{"name": f"records.{k}", "value": v} for k, v in report.records.items()]
    counts += [{"name": f"written.{k}", "value": v} for k, v in report.written.items()]
    counts.append({"name": "reference_rows", "value": report.reference_rows})
    row = {
        "run_id": report.run_id,
        "batch_id": report.batch_id,
        "engine": engine,
        "status": report.status,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
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
    return table_from_rows([row], RUNS_SCHEMA)
