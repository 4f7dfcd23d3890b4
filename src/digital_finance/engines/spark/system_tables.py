"""The `_system` tables on Spark: the same rows as the embedded engine, written by Delta Spark."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
from pyspark.sql import SparkSession

from digital_finance.engines.spark import delta_writes
from digital_finance.lakehouse import system_rows
from digital_finance.lakehouse.layout import TABLES, table_uri
from digital_finance.runs.plan import Batch, BatchClaimError, History
from digital_finance.runs.report import BatchReport


def _read(spark: SparkSession, root: str, table: str) -> pa.Table | None:
    df = delta_writes.read(spark, table_uri(root, table))
    return None if df is None else df.toArrow()


def history(spark: SparkSession, root: str) -> History:
    """What `_system` says of the batches so far (`system_rows.history`)."""
    return system_rows.history(
        _read(spark, root, TABLES.batches),
        _read(spark, root, TABLES.runs),
        _read(spark, root, TABLES.forgotten),
    )


def commit_plan(spark: SparkSession, root: str, batch: Batch, run_id: str, now: datetime) -> None:
    """Record the batch's files before any data table is written (the write-ahead step)."""
    df = spark.createDataFrame(system_rows.plan_rows(batch, run_id, now))
    # the plan's txn is the claim: Delta fails a concurrent commit of the same txn app id
    path = table_uri(root, TABLES.batches)
    if delta_writes.write(df, path, batch.batch_id, "append", merge_schema=True) is None:
        raise BatchClaimError(batch.batch_id)


def log_run(
    spark: SparkSession,
    root: str,
    report: BatchReport,
    started: datetime,
    finished: datetime,
    source_tz: str,
) -> None:
    """Append the run's row to `_system/pipeline_runs` (`system_rows.run_log_claim`)."""
    df = spark.createDataFrame(system_rows.run_row(report, started, finished, source_tz, "spark"))
    path = table_uri(root, TABLES.runs)
    claim = system_rows.run_log_claim(report)
    if claim is not None:
        delta_writes.write(df, path, claim, "append")
    else:
        df.write.format("delta").mode("append").option("mergeSchema", "true").save(path)
