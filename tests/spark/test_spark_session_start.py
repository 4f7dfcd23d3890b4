"""A local Spark session starts on the class archive that `make setup` built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.spark


def test_the_local_session_maps_the_class_archive_setup_built(spark: Any) -> None:
    from digital_finance.engines.spark import jvm
    from digital_finance.engines.spark.jars import delta_jars
    from tests.conftest import REPO

    archive = jvm.archive_path(REPO / ".cache", delta_jars(REPO / ".cache" / "spark-jars"))
    assert archive is not None and archive.is_file(), "`make setup` builds the class archive"
    pid = spark._jvm.java.lang.ProcessHandle.current().pid()
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert str(archive) in maps  # the driver's JVM runs on the archived classes


def test_the_workers_import_the_installed_pyspark(spark: Any) -> None:
    """The local session's worker daemon takes Spark's zips off the workers' path, so they
    import PySpark compiled, from the package the driver imports (`python_daemon`)."""
    import pyarrow as pa
    import pyspark

    def probe(batches: Any) -> Any:
        import sys

        for _ in batches:
            pass
        zips = [p for p in sys.path if p.endswith((".zip", ".jar")) and "pyspark" in p]
        found = {"pyspark": sys.modules["pyspark"].__file__, "zips": ",".join(zips)}
        yield pa.RecordBatch.from_pylist([found])

    (seen,) = spark.range(0, 1, 1, 1).mapInArrow(probe, "pyspark string, zips string").collect()
    assert seen["pyspark"] == pyspark.__file__
    assert seen["zips"] == ""
