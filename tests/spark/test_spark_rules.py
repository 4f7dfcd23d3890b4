"""Expectations on the Spark engine: counted like the embedded engine's, `fail` stops the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from digital_finance.definition.expectations import ExpectationError
from digital_finance.runs.report import RuleFailedError
from tests.conftest import rows, versions
from tests.spark.conftest import run_embedded, run_spark
from tests.spark.test_parity import assert_same_tables
from tests.spark.traps import write_trap_inputs

pytestmark = [pytest.mark.spark, pytest.mark.slow]

RULES = """
[[expectations]]
name = "price_below_ten"
dataset = "stocks"
condition = "price < 10"
action = "quarantine"

[[expectations]]
name = "volume_present"
dataset = "stocks"
condition = "volume IS NOT NULL"
action = "warn"

[[expectations]]
name = "cannot_be_evaluated"
dataset = "stocks"
condition = "volume / 0 < 1"  # NULL on DuckDB; no ANSI error on Spark: a failure on both
action = "warn"
"""


def test_user_expectations_quarantine_and_count_like_the_embedded_engine(
    spark: Any, tmp_path: Path
) -> None:
    config = tmp_path / "rules.toml"
    config.write_text(RULES, encoding="utf-8")
    stocks, funds = write_trap_inputs(tmp_path / "in")
    run_embedded(tmp_path / "embedded", stocks, funds, config=config)
    report = run_spark(spark, tmp_path / "spark", stocks, funds, config=config)
    assert_same_tables(tmp_path / "embedded", tmp_path / "spark")
    counted = {r.rule: r.failures for r in report.batches[0].rules}
    assert counted["price_below_ten"] > 0 and counted["volume_present"] > 0
    # every record that passed the contract fails a condition that cannot be evaluated
    silver_candidates = len(rows(tmp_path / "spark", "silver/stocks"))
    assert counted["cannot_be_evaluated"] >= silver_candidates > 0
    steps = {r["step"] for r in rows(tmp_path / "spark", "quarantine/stocks")}
    assert steps == {"contract_stocks", "expectations_stocks"}
    logged = rows(tmp_path / "embedded", "_system/pipeline_runs")[0]["rules"]
    spark_logged = rows(tmp_path / "spark", "_system/pipeline_runs")[0]["rules"]
    assert spark_logged == logged  # the same per-rule counts in the run log


def test_a_fail_rule_commits_nothing_and_bad_sql_is_reported(spark: Any, tmp_path: Path) -> None:
    stocks, funds = write_trap_inputs(tmp_path / "in")
    failing = tmp_path / "fail.toml"
    failing.write_text("[rules]\ninvalid_price = 'fail'\n", encoding="utf-8")
    with pytest.raises(RuleFailedError, match="invalid_price"):
        run_spark(spark, tmp_path / "lake", stocks, funds, config=failing)
    assert set(versions(tmp_path / "lake")) == {"_system/pipeline_runs"}  # only the failure log

    broken = tmp_path / "broken.toml"
    broken.write_text(
        '[[expectations]]\nname = "bad"\ndataset = "stocks"\ncondition = "no_such_column > 1"\n',
        encoding="utf-8",
    )
    with pytest.raises(ExpectationError, match="no_such_column"):
        run_spark(spark, tmp_path / "lake2", stocks, funds, config=broken)
