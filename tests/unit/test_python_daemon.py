"""The local Spark workers' path: the installed PySpark's own zips and jars go, others stay."""

from __future__ import annotations

from pathlib import Path

from digital_finance.engines.spark.python_daemon import same_pyspark, without_own_zips


def test_only_the_installed_pysparks_zips_and_jars_leave_the_path(tmp_path: Path) -> None:
    package = tmp_path / "site-packages" / "pyspark"
    (package / "python" / "lib").mkdir(parents=True)
    (package / "jars").mkdir()
    (package / "__init__.py").write_text("")
    own_zip = str(package / "python" / "lib" / "pyspark.zip")
    own_py4j = str(package / "python" / "lib" / "py4j-0.10.9.9-src.zip")
    own_jar = str(package / "jars" / "spark-core_2.13-4.2.0.jar")
    # a Spark of its own (SPARK_HOME elsewhere, no package around it) keeps its zip first
    other_spark = str(tmp_path / "spark-4.1" / "python" / "lib" / "pyspark.zip")
    kept = ["/work", other_spark, "/usr/lib/python311.zip", str(tmp_path / "site-packages")]
    path = [kept[0], own_zip, own_py4j, kept[1], own_jar, *kept[2:]]
    assert without_own_zips(path) == kept


def test_the_zips_stay_when_the_worker_finds_another_pyspark_or_none(tmp_path: Path) -> None:
    package = tmp_path / "site-packages" / "pyspark"
    (package / "python" / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    own_zip = str(package / "python" / "lib" / "pyspark.zip")
    other = tmp_path / "other-env"
    (other / "pyspark").mkdir(parents=True)
    (other / "pyspark" / "__init__.py").write_text("")
    path = [own_zip, str(tmp_path / "site-packages")]
    assert same_pyspark(path, without_own_zips(path))
    # an interpreter whose own PySpark comes first, or which has none
    assert not same_pyspark([own_zip, str(other)], [str(other)])
    assert not same_pyspark([own_zip], [])
