"""Enrichments give the same silver on both engines, also when configured after a first run."""

from __future__ import annotations

from decimal import Context, localcontext
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, rows
from tests.spark.conftest import run_embedded, run_spark
from tests.spark.test_parity import assert_same_tables

pytestmark = [pytest.mark.spark, pytest.mark.slow]

CONFIG = f"""
[[enrichments]]
name = "notional_value"

[[enrichments]]
name = "exchange_mic"

[[enrichments]]
name = "sector"
reference = "{REPO / "data/reference/sectors.csv"}"
"""


def test_enrichments_added_in_the_second_batch(spark: Any, generated: Path, tmp_path: Path) -> None:
    config = tmp_path / "enrich.toml"
    config.write_text(CONFIG, encoding="utf-8")
    files = sorted((generated / "stocks").iterdir())
    first, second = files[: len(files) // 2], files[len(files) // 2 :]
    funds = [generated / "mutual_funds"]
    run_embedded(tmp_path / "embedded", first, funds)
    run_embedded(tmp_path / "embedded", second, [], config=config)
    run_spark(spark, tmp_path / "spark", first, funds)
    run_spark(spark, tmp_path / "spark", second, [], config=config)
    assert_same_tables(tmp_path / "embedded", tmp_path / "spark")

    silver = rows(tmp_path / "spark", "silver/stocks")
    with_volume = [r for r in silver if r["notional"] is not None]
    assert with_volume, "no row got a notional value"
    with localcontext(Context(prec=60)):  # the default 28 digits would round big products
        for r in with_volume:
            assert r["notional"] == r["price"] * r["volume"]
    # rows written before the enrichment was configured hold null in its columns
    assert any(r["notional"] is None and r["volume"] is not None for r in silver)
    assert {r["exchange_mic"] for r in silver} >= {"XNYS", "XNAS"}
    assert any(r["sector"] is not None for r in silver)
