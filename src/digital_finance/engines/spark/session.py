"""One place that builds a SparkSession with Delta, for the CLI, the bench and the tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from digital_finance.engines.spark.jars import delta_jars

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# measured on 2 cores (docs/SPARK_PLAN.md): the defaults made a tiny write+MERGE take 22 s,
# these 13 s
LOCAL_DEFAULTS: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "4",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "1g",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}


def local_session(
    cache: Path, master: str = "local[2]", conf: Mapping[str, str] | None = None
) -> SparkSession:
    """A Spark session with Delta; `conf` entries win over the defaults."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    jars = ",".join(str(j) for j in delta_jars(cache / "spark-jars"))
    builder = SparkSession.builder.master(master).appName("digital-finance")
    settings = {
        **LOCAL_DEFAULTS,
        "spark.jars": jars,
        "spark.sql.warehouse.dir": str(cache / "spark-warehouse"),
        **(conf or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def on_cluster() -> bool:
    """True under spark-submit (the JVM launched us) or on Databricks (a session exists)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or "DATABRICKS_RUNTIME_VERSION" in os.environ


def cache_dir() -> Path:
    """Where the Delta jars and Spark's scratch folders are kept (`DIGITAL_FINANCE_CACHE`)."""
    return Path(os.environ.get("DIGITAL_FINANCE_CACHE", ".cache")).absolute()


def engine_session(master: str | None, conf: Mapping[str, str]) -> tuple[SparkSession, bool]:
    """The session a run uses, and whether the run owns it (and so stops it).

    On a cluster, or when the process already has a session, the session and its Delta setup
    are not ours: only `conf` is applied. Elsewhere a local session with the cached Delta
    jars is started.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None or (master is None and on_cluster()):
        session = active or SparkSession.builder.getOrCreate()
        for key, value in conf.items():
            session.conf.set(key, value)
        return session, False
    return local_session(cache_dir(), master or "local[2]", conf), True
