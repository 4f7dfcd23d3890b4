"""One local Spark session (with Delta) for every Spark test of the run, and engine runners."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from digital_finance.definition.pipeline import build_pipeline
from digital_finance.runs.report import RunReport
from digital_finance.sources.discovery import resolve_inputs
from tests.conftest import REPO, cli_ok


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from digital_finance.engines.spark.session import local_session

    session = local_session(REPO / ".cache", kafka=True)  # the Spark stream tests read Kafka
    yield session
    session.stop()


class QuietProgress:
    """Progress that goes nowhere."""

    def stage(self, message: str) -> None:
        pass

    def start_bytes(self, total: int) -> None:
        pass

    def advance_bytes(self, done: int) -> None:
        pass


def run_spark(
    spark: Any,
    out: Path,
    stocks: list[Path],
    funds: list[Path],
    tz: str = "UTC",
    config: Path | None = None,
) -> RunReport:
    """The Spark engine on the shared session, in-process (as `run --engine spark` does)."""
    from digital_finance.config import load_config
    from digital_finance.engines.spark.runner import SparkRunner

    settings = load_config(config, tz)
    pipeline = build_pipeline(
        settings.source_tz, settings.expectations, settings.rule_actions, settings.enrichments
    )

    inputs = {
        "stocks": resolve_inputs([str(p) for p in stocks]) if stocks else [],
        "mutual_funds": resolve_inputs([str(p) for p in funds]) if funds else [],
    }
    report = SparkRunner(pipeline, str(out), spark, QuietProgress()).run(inputs)
    assert report.ok, [b.error for b in report.batches]
    return report


def run_embedded(
    out: Path, stocks: list[Path], funds: list[Path], tz: str = "UTC", config: Path | None = None
) -> str:
    """The embedded engine through the CLI."""
    args = ["run", "--output", str(out), "--source-tz", tz]
    if config is not None:
        args += ["--config", str(config)]
    for p in stocks:
        args += ["--stocks", str(p)]
    for p in funds:
        args += ["--funds", str(p)]
    return cli_ok(*args)
