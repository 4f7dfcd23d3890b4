"""Every rule of `definition/rules.py`, rendered by both engines over the same rows, agrees."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from digital_finance.definition.rules import LatestWins, duckdb_quote, spark_quote

pytestmark = pytest.mark.spark

RULE = LatestWins(key=("stock_id",), event_time="event_time")
TIMES = [datetime(2024, 3, 15, 14, 30, s, tzinfo=UTC) for s in (0, 1)]


def _pairs() -> pa.Table:
    """Every combination of (event time, batch) for an old and a new row of one key."""
    rows: dict[str, list[Any]] = {k: [] for k in ("pair", "old_ev", "old_b", "new_ev", "new_b")}
    combos = itertools.product(TIMES, (1, 2), TIMES, (1, 2))
    for i, (old_ev, old_b, new_ev, new_b) in enumerate(combos):
        for k, v in zip(rows, (i, old_ev, old_b, new_ev, new_b), strict=True):
            rows[k].append(v)
    return pa.table(rows)


def test_the_merge_winner_is_the_same_predicate_on_both_engines(spark: Any) -> None:
    pairs = _pairs()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("p", pairs)
    old = "SELECT pair, old_ev AS event_time, old_b AS _batch_id, 7 AS stock_id FROM p"
    new = "SELECT pair, new_ev AS event_time, new_b AS _batch_id, 7 AS stock_id FROM p"
    sql = (f"SELECT t.pair, ({RULE.newer('s', 't', duckdb_quote)}) AS wins FROM ({old}) t "
           f"JOIN ({new}) s ON {RULE.key_match('s', 't', duckdb_quote)} AND s.pair = t.pair")  # fmt: skip
    on_duckdb = dict(con.execute(sql).fetchall())

    spark.createDataFrame(pairs.to_pandas()).createOrReplaceTempView("p")
    sql = (f"SELECT t.pair, ({RULE.newer('s', 't', spark_quote)}) AS wins FROM ({old}) t "
           f"JOIN ({new}) s ON {RULE.key_match('s', 't', spark_quote)} AND s.pair = t.pair")  # fmt: skip
    on_spark = {r["pair"]: r["wins"] for r in spark.sql(sql).collect()}
    assert on_duckdb == on_spark and len(on_duckdb) == pairs.num_rows
    # and it is the contract's rule: later event wins, then later batch, never a tie
    for row in pairs.to_pylist():
        expected = (row["new_ev"], row["new_b"]) > (row["old_ev"], row["old_b"])
        assert on_duckdb[row["pair"]] is expected


def test_the_batch_order_picks_the_same_record_per_key_on_both_engines(spark: Any) -> None:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rows = pa.table(
        {
            "stock_id": [1, 1, 1, 2, 2, 3],
            "event_time": [TIMES[1], TIMES[1], TIMES[0], TIMES[0], TIMES[0], TIMES[0]],
            "file_ordinal": [0, 1, 2, 0, 0, 5],
            "line_number": [9, 3, 1, 4, 8, 1],
            "row": [10, 11, 12, 13, 14, 15],
        }
    )
    con = duckdb.connect()
    con.register("r", rows)
    order = ", ".join(duckdb_quote(c) for c in RULE.batch_order())
    on_duckdb = sorted(
        r[0]
        for r in con.execute(f"SELECT arg_max(row, ({order})) FROM r GROUP BY stock_id").fetchall()
    )
    window = Window.partitionBy(*RULE.key).orderBy(*[F.col(c).desc() for c in RULE.batch_order()])
    df = spark.createDataFrame(rows.to_pandas())
    on_spark = sorted(
        r["row"]
        for r in df.withColumn("_rank", F.row_number().over(window)).where("_rank = 1").collect()
    )
    assert on_duckdb == on_spark == [11, 14, 15]
