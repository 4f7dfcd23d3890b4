"""Shared helpers: run the CLI, read tables back, compare lakehouses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, QueryBuilder
from typer.testing import CliRunner

from digital_finance.cli.main import app
from digital_finance.lakehouse.layout import TABLES

if TYPE_CHECKING:
    from tests.services.kafka import Kafka

REPO = Path(__file__).resolve().parents[1]
# columns that say *when* or *in which run* a row was written: they differ between two
# otherwise identical runs, so comparisons leave them out
RUN_COLUMNS = {"_ingested_at", "_quarantined_at", "_run_id", "_batch_id", "run_id", "planned_at"}


def cli(*args: str) -> Any:
    """Invoke the CLI in-process; fail the test with its output when it exits non-zero."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result


def cli_ok(*args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return str(result.output)


def cli_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a real process (for crash tests)."""
    return subprocess.run(
        [sys.executable, "-m", "digital_finance", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


def read_delta(path: Path) -> pa.Table:
    """A table's current rows by delta-rs alone (not by the code under test): its Arrow
    reader, or its query engine for files with deletion vectors, which the reader refuses."""
    dt = DeltaTable(str(path))
    if "deletionVectors" not in (dt.protocol().reader_features or []):
        return dt.to_pyarrow_table()
    return pa.table(QueryBuilder().register("t", dt).execute("SELECT * FROM t").read_all())


def rows(root: Path, table: str, drop: set[str] | None = None) -> list[dict[str, Any]]:
    """A table's rows, sorted, without the run-specific columns."""
    data = read_delta(root / table).to_pylist()
    skip = RUN_COLUMNS | (drop or set())
    cleaned = [{k: v for k, v in r.items() if k not in skip} for r in data]
    return sorted(cleaned, key=lambda r: repr(sorted(r.items())))


def versions(root: Path) -> dict[str, int]:
    """Delta version of every existing table."""
    out = {}
    for name in TABLES.all():
        path = root / name
        if (path / "_delta_log").exists():
            out[name] = DeltaTable(str(path)).version()
    return out


DATA_TABLES = [t for t in TABLES.all() if not t.startswith("_system")]


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated data set shared by the end-to-end tests (small, every form and trap)."""
    from digital_finance.generate import generate

    out = tmp_path_factory.mktemp("generated")
    generate(out, 30_000, 4_000, seed=11)
    return out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With two workers (`make test`: `-n 2 --dist loadgroup`), a module's tests stay on one
    worker (they share module fixtures), and every Spark test on one worker, which starts one
    Spark session for them all."""
    for item in items:
        group = "spark" if item.get_closest_marker("spark") else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kafka]:
    """One Kafka broker (KRaft, loopback) for every Kafka test of the run; tests make their
    own topics."""
    from tests.services import kafka as kafka_service

    k = kafka_service.start(tmp_path_factory.mktemp("kafka"))
    try:
        yield k
    finally:
        k.stop()
