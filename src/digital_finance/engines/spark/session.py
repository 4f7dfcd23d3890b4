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
