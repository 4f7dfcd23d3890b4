"""Delta commits on Spark carry the batch id: a retried batch is skipped, never doubled."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from digital_finance.lakehouse.layout import APP_ID

pytestmark = pytest.mark.spark


def _frame(spark: Any, batch_id: int, rows: list[tuple[int, str, int]]) -> Any:
    """Silver-like rows (key, price, event time in epoch seconds) of one batch."""
    return spark.createDataFrame(
        [(key, Decimal(price), at, batch_id) for key, price, at in rows],
        "stock_id bigint, price decimal(18,6), event_time bigint, _batch_id bigint",
    ).selectExpr("stock_id", "price", "timestamp_seconds(event_time) AS event_time", "_batch_id")


def test_append_and_merge_of_a_batch_happen_once(spark: Any, tmp_path: Path) -> None:
    from digital_finance.definition.rules import LatestWins
    from digital_finance.engines.spark.delta_writes import TXN_APP_ID, merge_latest, write

    path = str(tmp_path / "silver")
    first = _frame(spark, 1, [(1, "10.5", 100), (2, "20", 100)])
    assert write(first, path, 1, "append") == 2
    # the retry: Delta skips it, and the first attempt's commit (the newest, tagged with the
    # same batch) is not taken for the retry's
    assert write(first, path, 1, "append") is None
    second = _frame(spark, 2, [(1, "11", 200), (3, "30", 100)])
    assert merge_latest(second, path, 2, LatestWins(("stock_id",), "event_time")) == 2
    version = DeltaTable(path).version()
    assert merge_latest(second, path, 2, LatestWins(("stock_id",), "event_time")) is None
    assert DeltaTable(path).version() == version  # no commit at all for the retried MERGE
    assert DeltaTable(path).transaction_version(APP_ID) == 2  # the embedded engine sees it
    assert spark.conf.get(TXN_APP_ID, None) is None  # not left set for the next command
    got = {r["stock_id"]: r["price"] for r in spark.read.format("delta").load(path).collect()}
    assert got == {1: Decimal("11.000000"), 2: Decimal("20.000000"), 3: Decimal("30.000000")}


def test_a_local_tables_log_is_found_where_spark_writes_it(spark: Any, tmp_path: Path) -> None:
    from digital_finance.engines.spark.delta_writes import _local_table, write

    df = spark.createDataFrame([(1,), (2,)], "n long")
    for path in (str(tmp_path / "a b%20c"), (tmp_path / "d e").as_uri()):
        assert write(df, path, 1, "append") == 2  # its commit found, by the log read here
        table = _local_table(spark, path)
        assert table is not None and (table / "_delta_log" / f"{0:020d}.json").is_file()
        assert write(df, path, 1, "append") is None  # the batch again: skipped, and seen so
    # another file system: Delta's history is asked instead
    assert _local_table(spark, "abfss://c@account.dfs.core.windows.net/lake/t") is None
