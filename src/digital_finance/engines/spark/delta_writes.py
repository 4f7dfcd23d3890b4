"""Delta commits on Spark that are safe to retry: each carries the batch id as a Delta txn.

Appends and overwrites pass `txnAppId`/`txnVersion` as writer options; MERGE, which has no
writer options, reads the same pair from two session settings. Delta skips a commit whose
version is not above the table's recorded one, so a retried batch never doubles rows. The
embedded engine records the same app id, so the two engines continue each other's tables.

Whether Delta skipped a write is read from the table's history: every commit is tagged with
its batch in `userMetadata`, and a write that left no tagged commit newer than the version
before it was skipped (the public API has no reader for app transactions).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from digital_finance.definition.rules import LatestWins, spark_quote
from digital_finance.lakehouse.layout import APP_ID, batch_user_metadata

TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
TXN_VERSION = "spark.databricks.delta.write.txnVersion"
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


def exists(spark: SparkSession, path: str) -> bool:
    """True when `path` holds a Delta table."""
    return bool(DeltaTable.isDeltaTable(spark, path))


def _version(spark: SparkSession, path: str) -> int | None:
    if not exists(spark, path):
        return None
    row = DeltaTable.forPath(spark, path).history(1).select("version").first()
    return None if row is None else int(row["version"])


def _our_commit(spark: SparkSession, path: str, batch_id: int, before: int | None) -> Row | None:
    """The commit this write made, if any: tagged with the batch, newer than `before`.

    Looked up by its tag rather than taken as the newest commit, so that a commit by another
    writer in between (a concurrent job, auto-compaction) is not mistaken for ours. Called
    after a save or MERGE, so the table exists.
    """
    history = DeltaTable.forPath(spark, path).history(20)
    newer = history.where(F.col("version") > (-1 if before is None else before))
    return (
        newer.where(F.col("userMetadata") == batch_user_metadata(batch_id))
        .select("operationMetrics")
        .first()
    )


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
    merge_schema: bool = False,
) -> int | None:
    """Write `df` as batch `batch_id`; rows written, or None when the table had the batch.

    `merge_schema` lets an append add columns: for the `_system` tables, which gain columns
    as the project does (a data table's schema drift fails instead).
    """
    spark = df.sparkSession
    before = _version(spark, path)
    writer = (
        df.write.format("delta")
        .mode(mode)
        .option("txnAppId", APP_ID)
        .option("txnVersion", str(batch_id))
        .option("userMetadata", batch_user_metadata(batch_id))
    )
    if mode == "overwrite":
        writer = writer.option("overwriteSchema", "true")  # gold is rebuilt whole
    elif merge_schema:
        writer = writer.option("mergeSchema", "true")
    writer.save(path)
    ours = _our_commit(spark, path, batch_id, before)
    if ours is None:
        return None
    return int(dict(ours["operationMetrics"] or {}).get("numOutputRows", "0"))


@contextmanager
def _txn(spark: SparkSession, batch_id: int) -> Iterator[None]:
    """Tag the DML commands run inside with the batch (MERGE has no writer options).

    The settings are the session's: nothing else may run DML on the session meanwhile.
    """
    settings = {
        TXN_APP_ID: APP_ID,
        TXN_VERSION: str(batch_id),
        USER_METADATA: batch_user_metadata(batch_id),
    }
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        # left set, the pair would tag (and so skip) the next, unrelated DML command
        for key, old in previous.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def merge_latest(df: DataFrame, path: str, batch_id: int, rule: LatestWins) -> int | None:
    """MERGE the batch's candidates into silver: per key, the later event (then batch) wins.

    Returns the candidate rows offered, or None when the table already had the batch. A new
    table is simply written.
    """
    spark = df.sparkSession
    before = _version(spark, path)
    if before is None:
        return write(df, path, batch_id, "append")
    on = rule.key_match("s", "t", spark_quote)
    newer = rule.newer("s", "t", spark_quote)
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
    ours = _our_commit(spark, path, batch_id, before)
    if ours is None:
        return None
    return int(dict(ours["operationMetrics"] or {}).get("numSourceRows", "0"))
