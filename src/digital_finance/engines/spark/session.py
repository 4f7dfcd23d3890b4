"""One place that builds a SparkSession with Delta, for the CLI, the bench and the tests."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from digital_finance.engines.spark import jvm
from digital_finance.engines.spark.jars import SparkSetupError, delta_jars, kafka_jars

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# measured on 2 cores (docs/SPARK_PLAN.md): the defaults made a tiny write+MERGE take 22 s,
# these 13 s
LOCAL_DEFAULTS: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "4",
    "spark.databricks.delta.snapshotPartitions": "1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "1g",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # workers import the installed PySpark, compiled, rather than Spark's zip, compiled
    # again in every worker (`python_daemon`)
    "spark.python.daemon.module": "digital_finance.engines.spark.python_daemon",
}


def local_session(
    cache: Path,
    master: str = "local[2]",
    conf: Mapping[str, str] | None = None,
    kafka: bool = False,
) -> SparkSession:
    """A Spark session with Delta (and Spark's Kafka source with `kafka`); `conf` entries
    win over the defaults. The driver's JVM starts as `jvm.driver_options` says unless
    `conf` sets its Java options."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    delta = delta_jars(cache / "spark-jars")
    found = delta + (kafka_jars(cache / "spark-jars") if kafka else [])
    jars = ",".join(str(j) for j in found)
    builder = SparkSession.builder.master(master).appName("digital-finance")
    settings = {
        **LOCAL_DEFAULTS,
        jvm.JAVA_OPTIONS: jvm.driver_options(cache, delta),
        "spark.jars": jars,
        "spark.sql.warehouse.dir": str(cache / "spark-warehouse"),
        **(conf or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


@contextmanager
def session_setting(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """`key` set to `value` on the session meanwhile, then as it was."""
    before = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def on_cluster() -> bool:
    """True under spark-submit (the JVM launched us) or on Databricks (a session exists)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or "DATABRICKS_RUNTIME_VERSION" in os.environ


def cache_dir() -> Path:
    """Where the Delta jars and Spark's scratch folders are kept (`DIGITAL_FINANCE_CACHE`)."""
    return Path(os.environ.get("DIGITAL_FINANCE_CACHE", ".cache")).absolute()


_SIZE = re.compile(r"[0-9]+[kmgtp]?b?", re.IGNORECASE)


def check_conf(conf: Mapping[str, str]) -> None:
    """Refuse, before a JVM starts, memory sizes the JVM would die on without naming them."""
    for key, value in conf.items():
        if key.endswith((".memory", ".memoryOverhead", ".maxResultSize")) and not _SIZE.fullmatch(
            value.strip()
        ):
            raise SparkSetupError(
                f"--conf {key}={value}: a size is a number with an optional unit, e.g. 2g or 512m"
            )


def _apply_checked(session: SparkSession, conf: Mapping[str, str]) -> None:
    """Set each SQL setting again on the live session: Spark checks its type only then, and
    otherwise fails the first query with a trace that never names the setting."""
    for key, value in conf.items():
        if not key.startswith("spark.sql."):
            continue
        try:
            session.conf.set(key, value)
        except Exception as exc:  # pyspark raises its IllegalArgumentException wrapper
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SparkSetupError(f"--conf {key}={value}: {first}") from None


def engine_session(
    master: str | None, conf: Mapping[str, str], kafka: bool = False
) -> tuple[SparkSession, bool]:
    """The session a run uses, and whether the run owns it (and so stops it).

    On a cluster, or when the process already has a session, the session and its Delta setup
    are not ours: only `conf` is applied. Elsewhere a local session with the cached Delta
    jars (and, for a stream from Kafka, Spark's Kafka source) is started.
    """
    from pyspark.sql import SparkSession

    check_conf(conf)
    active = SparkSession.getActiveSession()
    if active is not None or (master is None and on_cluster()):
        session = active or SparkSession.builder.getOrCreate()
        for key, value in conf.items():
            session.conf.set(key, value)
        return session, False
    try:
        session = local_session(cache_dir(), master or "local[2]", conf, kafka=kafka)
    except SparkSetupError:
        raise
    except Exception as exc:  # the JVM did not start: its own words, and what was passed
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        given = ", ".join(f"{k}={v}" for k, v in conf.items()) or "none"
        raise SparkSetupError(
            f"Spark did not start ({first}); the --conf settings given: {given}"
        ) from None
    try:
        _apply_checked(session, conf)
    except SparkSetupError:
        session.stop()
        raise
    return session, True
