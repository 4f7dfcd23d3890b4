"""Both engines, same inputs, same tables: every contract trap, generated data, re-runs.

The Spark engine must correct for Spark's own defaults (JSON numbers as doubles, the session
time zone, `dropDuplicates` keeping any row, ANSI casts raising); the comparison here is of
whole tables, row for row, with only the columns that say *when* a row was written left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from tests.conftest import DATA_TABLES, rows, versions
from tests.spark.conftest import run_embedded, run_spark
from tests.spark.traps import write_trap_inputs

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _schema(root: Path, table: str) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in DeltaTable(str(root / table)).schema().to_arrow()]


def assert_same_tables(a: Path, b: Path) -> None:
    for table in DATA_TABLES:
        assert _schema(a, table) == _schema(b, table), table
        assert rows(a, table) == rows(b, table), table
    for table in ("_system/batches", "_system/pipeline_runs"):
        assert _schema(a, table) == _schema(b, table), table


@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
def test_every_contract_trap_gives_the_same_tables(spark: Any, tmp_path: Path, tz: str) -> None:
    stocks, funds = write_trap_inputs(tmp_path / "in")
    run_embedded(tmp_path / "embedded", stocks, funds, tz)
    run_spark(spark, tmp_path / "spark", stocks, funds, tz)
    assert_same_tables(tmp_path / "embedded", tmp_path / "spark")
    # the traps did reach every table: rejects of each kind, ties resolved, decimals exact
    quarantined = {r["reason"] for r in rows(tmp_path / "spark", "quarantine/stocks")}
    assert {"invalid_json", "not_an_object", "duplicate_key", "invalid_utf8",
            "invalid_price", "invalid_timestamp", "invalid_stock_id"} <= quarantined  # fmt: skip
    silver = {r["stock_id"]: r for r in rows(tmp_path / "spark", "silver/stocks")}
    assert str(silver[1]["price"]) == "2.000000"  # the tie's later record wins
    assert str(silver[2]["price"]) == "0.000001"  # gzip recognised by its bytes


def test_generated_data_in_two_batches_and_a_rerun(
    spark: Any, generated: Path, tmp_path: Path
) -> None:
    first = sorted((generated / "stocks").iterdir())
    half = len(first) // 2
    funds = [generated / "mutual_funds"]
    for engine_out, run in (
        (tmp_path / "embedded", lambda out, s, f: run_embedded(out, s, f)),
        (tmp_path / "spark", lambda out, s, f: run_spark(spark, out, s, f)),
    ):
        run(engine_out, first[:half], funds)
        run(engine_out, first[half:], [])  # a second batch: silver MERGE, gold rebuilt
    assert_same_tables(tmp_path / "embedded", tmp_path / "spark")

    before = versions(tmp_path / "spark")
    report = run_spark(spark, tmp_path / "spark", first, funds)
    assert report.batches == [] and report.skipped_files == len(first) + len(
        list((generated / "mutual_funds").iterdir())
    )
    assert versions(tmp_path / "spark") == before  # a re-run changes no table


def test_a_first_run_with_one_dataset_leaves_tables_both_engines_continue(
    spark: Any, generated: Path, tmp_path: Path
) -> None:
    funds, stocks = [generated / "mutual_funds"], [generated / "stocks"]
    run_embedded(tmp_path / "embedded", [], funds)
    run_spark(spark, tmp_path / "spark", [], funds)
    assert_same_tables(tmp_path / "embedded", tmp_path / "spark")  # typed empty stock tables
    run_embedded(tmp_path / "embedded", stocks, [])
    run_embedded(tmp_path / "spark", stocks, [])  # the other engine continues Spark's tables
    assert_same_tables(tmp_path / "embedded", tmp_path / "spark")


def test_a_batch_of_one_dataset_writes_nothing_to_the_others_tables(
    spark: Any, generated: Path, tmp_path: Path
) -> None:
    """Neither engine commits to the tables of a dataset the batch has no part of (a
    stream of quotes alone, every trigger), and the tables stay the same on both."""
    stocks = sorted((generated / "stocks").iterdir())
    funds = [generated / "mutual_funds"]
    run_embedded(tmp_path / "embedded", stocks[:1], funds)
    run_spark(spark, tmp_path / "spark", stocks[:1], funds)
    fund_tables = [t for t in DATA_TABLES if t.endswith("mutual_funds")]
    for engine, run in (
        ("embedded", lambda out: run_embedded(out, stocks[1:], [])),
        ("spark", lambda out: run_spark(spark, out, stocks[1:], [])),
    ):
        before = versions(tmp_path / engine)
        run(tmp_path / engine)
        after = versions(tmp_path / engine)
        assert {t: after[t] for t in fund_tables} == {t: before[t] for t in fund_tables}, engine
        assert after["silver/stocks"] == before["silver/stocks"] + 1, engine  # it did run
    assert_same_tables(tmp_path / "embedded", tmp_path / "spark")
