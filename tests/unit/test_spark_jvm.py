"""The local Spark driver's JVM options: JIT thresholds always, the class archive once built."""

from __future__ import annotations

from pathlib import Path

from digital_finance.engines.spark import jvm


def test_the_archive_is_used_once_it_exists_and_belongs_to_the_jar_set(tmp_path: Path) -> None:
    jars = [tmp_path / "delta-spark_4.2_2.13-4.4.0.jar", tmp_path / "delta-storage-4.4.0.jar"]
    archive = jvm.archive_path(tmp_path, jars)
    assert archive is not None and archive.parent == tmp_path / "spark-jars"
    without = jvm.driver_options(tmp_path, jars)
    assert without.split() == list(jvm.JIT_OPTIONS)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"an archive")
    options = jvm.driver_options(tmp_path, jars).split()
    assert f"-XX:SharedArchiveFile={archive}" in options
    assert options[: len(jvm.JIT_OPTIONS)] == list(jvm.JIT_OPTIONS)
    # another jar set (another Delta release) has an archive of its own
    assert jvm.archive_path(tmp_path, jars[:1]) != archive
