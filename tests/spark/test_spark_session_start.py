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
