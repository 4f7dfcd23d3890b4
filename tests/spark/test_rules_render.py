"""Every rule of `definition/rules.py`, rendered by both engines over the same rows, agrees."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from digital_finance.definition.rules import (
    DUCKDB,
    QUARANTINE,
    SPARK,
    Dialect,
    LatestWins,
    duckdb_quote,
    spark_quote,
)

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


# user rules in declared order: the names sort the other way round, so an engine that
# orders the failed rules by name (or by a set) would give another `reason`
USER_RULES = [("zeta_small", "price < 100", "quarantine"), ("alpha_positive", "price > 5", "quarantine"),
              ("mid_warn", "price <> 50", "warn")]  # fmt: skip
QUARANTINING = [n for n, _, action in USER_RULES if action == "quarantine"]


def _staged_rows() -> pa.Table:
    return pa.table(
        {
            "id": [1, 2, 3, 4, 5, 6, 7],
            "reasons": [[], ["invalid_price", "missing_symbol"], [], [], [], [], ["invalid_json"]],
            "price": [50, None, 500, 3, None, 20, 500],
        },
        schema=pa.schema(
            [("id", pa.int64()), ("reasons", pa.list_(pa.string())), ("price", pa.int64())]
        ),
    )


def _expected(row: dict[str, Any]) -> dict[str, Any]:
    """The rule in plain Python: contract first; user rules only where it passed, NULL fails."""
    if row["reasons"]:
        return {"reason": row["reasons"][0], "reasons": row["reasons"], "step": "contract",
                "quarantined": True, "passes": False}  # fmt: skip
    price = row["price"]
    checks = {"zeta_small": price is not None and price < 100,
              "alpha_positive": price is not None and price > 5}  # fmt: skip
    failed = [n for n in QUARANTINING if not checks[n]]
    return {"reason": failed[0] if failed else None, "reasons": failed,
            "step": "expectations",  # the step a quarantine row would carry
            "quarantined": bool(failed), "passes": not failed}  # fmt: skip


def _choice_sql(d: Dialect, relation: str) -> str:
    failed = QUARANTINE.failed_rules([(n, c) for n, c, _ in USER_RULES], d)
    checked = f"(SELECT *, {failed} AS failed_rules FROM {relation})"
    return (
        f"SELECT id, {QUARANTINE.reason(QUARANTINING, d)} AS reason, "
        f"{QUARANTINE.reasons(QUARANTINING, d)} AS reasons, "
        f"{QUARANTINE.step('contract', 'expectations', d)} AS step, "
        f"{QUARANTINE.quarantined(QUARANTINING, d)} AS quarantined, "
        f"{QUARANTINE.passes(QUARANTINING, d)} AS passes FROM {checked} c ORDER BY id"
    )


def test_the_quarantine_choice_is_the_same_on_both_engines(spark: Any) -> None:
    rows = _staged_rows()
    con = duckdb.connect()
    con.register("staged", rows)
    cursor = con.execute(_choice_sql(DUCKDB, "staged"))
    names = [c[0] for c in cursor.description]
    on_duckdb = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    spark.createDataFrame(rows.to_pandas()).createOrReplaceTempView("staged")
    on_spark = [r.asDict() for r in spark.sql(_choice_sql(SPARK, "staged")).collect()]
    for r in on_duckdb + on_spark:
        r["reasons"] = list(r["reasons"])
    expected = [{"id": r["id"], **_expected(r)} for r in rows.to_pylist()]
    assert on_duckdb == expected
    assert on_spark == expected
    # the record failing both quarantine rules keeps them in declared order
    assert on_duckdb[4]["reasons"] == ["zeta_small", "alpha_positive"]


def test_literals_survive_both_dialects(spark: Any) -> None:
    text = "it's a \\ back'slash"
    assert duckdb.connect().execute(f"SELECT {DUCKDB.literal(text)}").fetchall()[0][0] == text
    assert spark.sql(f"SELECT {SPARK.literal(text)} AS t").collect()[0]["t"] == text
