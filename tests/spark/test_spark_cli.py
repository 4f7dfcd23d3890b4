"""`digital-finance run --engine spark` as a user runs it: a real process, a crash, a re-run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli_process, versions
from tests.spark.conftest import run_embedded
from tests.spark.test_parity import assert_same_tables

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_crash_mid_batch_then_rerun_equals_one_clean_run(generated: Path, tmp_path: Path) -> None:
    stocks, funds = generated / "stocks", generated / "mutual_funds"
    lake = tmp_path / "spark"
    args = ["run", "--engine", "spark", "--stocks", str(stocks), "--funds", str(funds),
            "--output", str(lake), "--conf", "spark.sql.shuffle.partitions=2"]  # fmt: skip

    crashed = cli_process(*args, env={"DIGITAL_FINANCE_CRASH_AT": "before_silver_stocks"})
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert "silver/stocks" not in versions(lake)  # bronze and quarantine were committed

    resumed = cli_process(*args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed after an interruption" in resumed.stdout
    assert "already committed" in resumed.stdout  # bronze/quarantine of stocks not doubled

    run_embedded(tmp_path / "clean", [stocks], [funds])
    assert_same_tables(tmp_path / "clean", lake)


def test_spark_settings_need_the_spark_engine(tmp_path: Path) -> None:
    result = cli_process("run", "--stocks", str(tmp_path), "--master", "local[1]")
    assert result.returncode != 0
    assert "--engine spark" in result.stderr + result.stdout
