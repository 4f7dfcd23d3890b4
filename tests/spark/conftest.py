"""One local Spark session (with Delta) for every Spark test of the run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from digital_finance.engines.spark.session import local_session

    session = local_session(REPO / ".cache")
    yield session
    session.stop()
