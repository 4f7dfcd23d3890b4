"""Delta's jars for a local Spark, fetched from Maven Central once into `.cache/spark-jars/`.

Two jars are enough (delta-spark and delta-storage): Ivy's full resolution pulls 33 jars,
174 MB, with older duplicates of jars Spark already ships (docs/SPARK_PLAN.md). Maven is on
the machines we run on; the first start needs Maven Central, later starts work offline.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from digital_finance.errors import TerminalError


class SparkSetupError(TerminalError):
    """Local Spark cannot start; the message says what to install or fix."""


DELTA_VERSION_FOR_SPARK = {"4.2": "4.4.0"}  # Spark major.minor -> delta-spark release


def java_major() -> int:
    """The major version of the `java` on PATH."""
    java = shutil.which("java")
    if java is None:
        raise SparkSetupError(
            "Spark needs Java 17 or later: install a JDK (apt-get install openjdk-17-jdk-headless)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not found:
        raise SparkSetupError(f"cannot read the Java version from: {out.strip()[:200]}")
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def delta_coordinates() -> list[str]:
    """Maven coordinates of the Delta jars matching the installed PySpark."""
    spark = ".".join(metadata.version("pyspark").split(".")[:2])
    delta = DELTA_VERSION_FOR_SPARK.get(spark)
    if delta is None:
        raise SparkSetupError(
            f"no delta-spark release is known to work with PySpark {spark}; install the "
            "project's spark extra: pip install -e '.[spark]'"
        )
    return [f"io.delta:delta-spark_{spark}_2.13:{delta}", f"io.delta:delta-storage:{delta}"]


# Spark major.minor -> Spark's Kafka source and what it needs beyond Spark's own jars (the
# versions of spark-sql-kafka's pom: kafka-clients and commons-pool2 of its parent)
KAFKA_FOR_SPARK = {
    "4.2": (
        "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0",
        "org.apache.spark:spark-token-provider-kafka-0-10_2.13:4.2.0",
        "org.apache.kafka:kafka-clients:3.9.2",
        "org.apache.commons:commons-pool2:2.13.1",
    )
}


def kafka_coordinates() -> list[str]:
    """Maven coordinates of Spark's Kafka source for the installed PySpark."""
    spark = ".".join(metadata.version("pyspark").split(".")[:2])
    found = KAFKA_FOR_SPARK.get(spark)
    if found is None:
        raise SparkSetupError(f"no Kafka source jars are known for PySpark {spark}")
    return list(found)


def delta_jars(cache: Path) -> list[Path]:
    """Paths of the Delta jars, fetched with Maven into `cache` when missing."""
    return maven_jars(delta_coordinates(), cache)


def kafka_jars(cache: Path) -> list[Path]:
    """Paths of Spark's Kafka source jars, fetched with Maven into `cache` when missing."""
    return maven_jars(kafka_coordinates(), cache)


def maven_jars(coordinates: list[str], cache: Path) -> list[Path]:
    """Paths of these jars, fetched with Maven into `cache` when missing."""
    if java_major() < 17:
        raise SparkSetupError("Spark 4 needs Java 17 or later; `java -version` shows an older one")
    cache.mkdir(parents=True, exist_ok=True)
    jars = []
    for coordinate in coordinates:
        _, artifact, version = coordinate.split(":")
        jar = cache / f"{artifact}-{version}.jar"
        if not jar.exists():
            _fetch(coordinate, cache)
        if not jar.exists():
            raise SparkSetupError(f"Maven did not produce {jar}")
        jars.append(jar)
    return jars


def _fetch(coordinate: str, cache: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SparkSetupError(
            f"the jar {coordinate} is not in {cache} and Maven is not installed: "
            "install Maven (apt-get install maven) or copy the jar there"
        )
    done = subprocess.run(
        [
            mvn, "-q", "-B", f"-Dmaven.repo.local={cache / 'm2'}",
            "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy",
            f"-Dartifact={coordinate}", f"-DoutputDirectory={cache}",
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SparkSetupError(
            f"fetching {coordinate} from Maven Central failed (the first start needs it):\n"
            f"{(done.stdout + done.stderr)[-1500:]}"
        )
