"""Delta commits on Spark that are safe to retry: each carries the batch id as a Delta txn.

Appends and overwrites pass `txnAppId`/`txnVersion` as writer options; MERGE, which has no
writer options, reads the same pair from two session settings. Delta skips a commit whose
version is not above the table's recorded one, so a retried batch never doubles rows. The
embedded engine records the same app id, so the two engines continue each other's tables.

Whether Delta skipped a write is read from the table's history: every commit is tagged in
`userMetadata` with its batch and a token of the write that made it, and a write whose token
is in no commit was skipped (the public API has no reader for app transactions). One lookup
after the write: the table's version before it is not needed, which saved a history query
per table and batch.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Literal

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from digital_finance.definition.rules import LatestWins, spark_quote
from digital_finance.engines.spark.session import session_setting
from digital_finance.lakehouse.layout import APP_ID, batch_user_metadata, commit_info

TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
TXN_VERSION = "spark.databricks.delta.write.txnVersion"
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
STATS_COLUMNS_OF_NEW_TABLES = "spark.databricks.delta.properties.defaults.dataSkippingStatsColumns"


def exists(spark: SparkSession, path: str) -> bool:
    """True when `path` holds a Delta table."""
    return bool(DeltaTable.isDeltaTable(spark, path))


def _tag(batch_id: int) -> str:
    """A fresh `userMetadata` for one write of the batch."""
    return batch_user_metadata(batch_id, uuid.uuid4().hex)


def _our_commit(spark: SparkSession, path: str, tag: str) -> dict[str, str] | None:
    """The operation metrics of the commit this write made, if any: the one carrying its tag.

    Looked up by its tag rather than taken as the newest commit, so that a commit by another
    writer in between (a concurrent job, auto-compaction) is not mistaken for ours, nor an
    earlier attempt's commit of the same batch. Called after a save or MERGE, under the
    commit lock: the commit is among the newest few. A local table's log is read directly
    (the Delta protocol's commit files); elsewhere Delta's history, a Spark job (about 0.15 s
    a write warm, 0.8 s for the first of a session).
    """
    table = _local_table(spark, path)
    if table is not None:
        try:
            return _tagged_in_log(table, tag)
        except OSError:  # not where Spark wrote it after all: ask Delta
            pass
    history = DeltaTable.forPath(spark, path).history(_NEWEST_COMMITS)
    row = history.where(F.col("userMetadata") == tag).select("operationMetrics").first()
    return None if row is None else dict(row["operationMetrics"] or {})


_NEWEST_COMMITS = 20
_COMMIT_FILE = re.compile(r"^[0-9]{20}\.json$")


def _local_table(spark: SparkSession, path: str) -> Path | None:
    """The table's folder on the driver's local file system, as Spark resolves `path` (a
    plain path may be on HDFS where that is the default file system, and `dbfs:` is
    Databricks'); None elsewhere, or where the session has no JVM to ask."""
    jvm = getattr(spark, "_jvm", None)
    jsc = getattr(spark, "_jsc", None)
    if jvm is None or jsc is None:  # Spark Connect
        return None
    where = jvm.org.apache.hadoop.fs.Path(path)
    if where.toUri().getScheme() not in (None, "file"):
        return None  # without asking for its file system, which may not be loaded here
    fs = where.getFileSystem(jsc.hadoopConfiguration())  # a plain path's: the default one
    if fs.getScheme() != "file":
        return None
    return Path(str(fs.makeQualified(where).toUri().getPath()))


def _tagged_in_log(table: Path, tag: str) -> dict[str, str] | None:
    """The operation metrics of the commit among the newest whose `userMetadata` is `tag`."""
    names = os.listdir(table / "_delta_log")
    versions = sorted((int(n[:20]) for n in names if _COMMIT_FILE.match(n)), reverse=True)
    for version in versions[:_NEWEST_COMMITS]:
        info = commit_info(table, version)
        if info.get("userMetadata") == tag:
            return {k: str(v) for k, v in (info.get("operationMetrics") or {}).items()}
    return None


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
    unindexed: frozenset[str] = frozenset(),
) -> int | None:
    """Write `df` as batch `batch_id`; rows written, or None when the table had the batch.

    `merge_schema` lets an append add columns: for the `_system` tables, which gain columns
    as the project does (a data table's schema drift fails instead). A table this write
    creates keeps no statistics of the `unindexed` columns (`delta.dataSkippingStatsColumns`
    names the others); an existing table keeps its own setting.
    """
    spark = df.sparkSession
    tag = _tag(batch_id)
    writer = (
        df.write.format("delta")
        .mode(mode)
        .option("txnAppId", APP_ID)
        .option("txnVersion", str(batch_id))
        .option("userMetadata", tag)
    )
    if mode == "overwrite":
        writer = writer.option("overwriteSchema", "true")  # gold is rebuilt whole
    elif merge_schema:
        writer = writer.option("mergeSchema", "true")
    with ExitStack() as stack:
        if unindexed:
            indexed = ",".join(f.name for f in df.schema.fields if f.name not in unindexed)
            stack.enter_context(session_setting(spark, STATS_COLUMNS_OF_NEW_TABLES, indexed))
        writer.save(path)
    ours = _our_commit(spark, path, tag)
    return None if ours is None else int(ours.get("numOutputRows", "0"))


@contextmanager
def _txn(spark: SparkSession, batch_id: int, tag: str) -> Iterator[None]:
    """Tag the DML commands run inside with the batch (MERGE has no writer options).

    The settings are the session's: nothing else may run DML on the session meanwhile.
    Left set, the pair would tag (and so skip) the next, unrelated DML command: each is put
    back as it was.
    """
    settings = {TXN_APP_ID: APP_ID, TXN_VERSION: str(batch_id), USER_METADATA: tag}
    with ExitStack() as stack:
        for key, value in settings.items():
            stack.enter_context(session_setting(spark, key, value))
        yield


def merge_latest(df: DataFrame, path: str, batch_id: int, rule: LatestWins) -> int | None:
    """MERGE the batch's candidates into silver: per key, the later event (then batch) wins.

    Returns the candidate rows offered, or None when the table already had the batch. A new
    table is simply written.
    """
    spark = df.sparkSession
    if not exists(spark, path):
        return write(df, path, batch_id, "append")
    on = rule.key_match("s", "t", spark_quote)
    newer = rule.newer("s", "t", spark_quote)
    tag = _tag(batch_id)
    with _txn(spark, batch_id, tag):
        (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(df.alias("s"), on)
            .withSchemaEvolution()  # enrichment columns added later become new columns
            .whenMatchedUpdateAll(condition=newer)
            .whenNotMatchedInsertAll()
            .execute()
        )
    ours = _our_commit(spark, path, tag)
    return None if ours is None else int(ours.get("numSourceRows", "0"))
