"""Delta commits on Spark that are safe to retry: each carries the batch id as a Delta txn.

Appends and overwrites pass `txnAppId`/`txnVersion` as writer options; MERGE, which has no
writer options, reads the same pair from two session settings. Delta skips a commit whose
version is not above the table's recorded one, so a retried batch never doubles rows. The
embedded engine records the same app id, so the two engines continue each other's tables.

Whether Delta skipped a write is read from the table's version before and after: the
public API has no reader for app transactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from digital_finance.lakehouse.layout import APP_ID

TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
TXN_VERSION = "spark.databricks.delta.write.txnVersion"


def exists(spark: SparkSession, path: str) -> bool:
    """True when `path` holds a Delta table."""
    return bool(DeltaTable.isDeltaTable(spark, path))


def _last_commit(spark: SparkSession, path: str) -> tuple[int, dict[str, str]] | None:
    if not exists(spark, path):
        return None
    row = DeltaTable.forPath(spark, path).history(1).select("version", "operationMetrics").first()
    if row is None:
        return None
    return int(row["version"]), dict(row["operationMetrics"] or {})


def read(spark: SparkSession, path: str) -> DataFrame | None:
    """The table as a DataFrame, or None when it does not exist."""
    if not exists(spark, path):
        return None
    return spark.read.format("delta").load(path)


def write(
    df: DataFrame,
    path: str,
    batch_id: int,
    mode: Literal["append", "overwrite"],
) -> int | None:
    """Write `df` as batch `batch_id`; rows written, or None when the table had the batch."""
    spark = df.sparkSession
    before = _last_commit(spark, path)
    writer = (
        df.write.format("delta")
        .mode(mode)
        .option("txnAppId", APP_ID)
        .option("txnVersion", str(batch_id))
        .option("userMetadata", f"digital_finance.batch_id={batch_id}")
    )
    if mode == "append":
        writer = writer.option("mergeSchema", "true")
    else:
        writer = writer.option("overwriteSchema", "true")
    writer.save(path)
    after = _last_commit(spark, path)
    if after is None or (before is not None and after[0] == before[0]):
        return None
    return int(after[1].get("numOutputRows", "0"))


@contextmanager
def _txn(spark: SparkSession, batch_id: int) -> Iterator[None]:
    spark.conf.set(TXN_APP_ID, APP_ID)
    spark.conf.set(TXN_VERSION, str(batch_id))
    try:
        yield
    finally:
        # left set, the pair would tag (and so skip) the next, unrelated DML command
        spark.conf.unset(TXN_APP_ID)
        spark.conf.unset(TXN_VERSION)


def merge_latest(
    df: DataFrame, path: str, batch_id: int, key: tuple[str, ...], event_time: str
) -> int | None:
    """MERGE the batch's candidates into silver: per key, the later event (then batch) wins.

    Returns the candidate rows offered, or None when the table already had the batch. A new
    table is simply written.
    """
    spark = df.sparkSession
    before = _last_commit(spark, path)
    if before is None:
        return write(df, path, batch_id, "append")
    on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in key)
    ev = f"`{event_time}`"
    newer = f"s.{ev} > t.{ev} OR (s.{ev} = t.{ev} AND s._batch_id > t._batch_id)"
    with _txn(spark, batch_id):
        (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(df.alias("s"), on)
            .withSchemaEvolution()  # enrichment columns added later become new columns
            .whenMatchedUpdateAll(condition=newer)
            .whenNotMatchedInsertAll()
            .execute()
        )
    after = _last_commit(spark, path)
    if after is None or after[0] == before[0]:
        return None
    return int(after[1].get("numSourceRows", "0"))
