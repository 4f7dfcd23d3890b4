"""Tables written by the embedded engine are read and continued by Spark, and the other way round."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable, write_deltalake

from digital_finance.lakehouse.layout import TABLES
from tests.conftest import cli_ok, rows

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def lake(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("interop") / "lake"
    cli_ok("run", "--stocks", str(generated / "stocks"), "--funds", str(generated / "mutual_funds"),
           "--output", str(out))  # fmt: skip
    return out


def test_spark_reads_every_table_the_embedded_engine_writes(spark: Any, lake: Path) -> None:
    for name in TABLES.all():
        frame = spark.read.format("delta").load(str(lake / name))
        assert frame.count() == DeltaTable(str(lake / name)).to_pyarrow_table().num_rows, name
    types = dict(spark.read.format("delta").load(str(lake / "silver/stocks")).dtypes)
    assert types["price"] == "decimal(18,6)"
    assert types["event_time"] == "timestamp"
    assert types["stock_id"] == "bigint"
    funds = dict(spark.read.format("delta").load(str(lake / "silver/mutual_funds")).dtypes)
    assert funds["holding_weight"] == "decimal(9,6)"
    top = (
        spark.read.format("delta")
        .load(str(lake / "silver/stocks"))
        .orderBy("price", ascending=False)
        .first()
    )
    assert top["price"] == max(r["price"] for r in rows(lake, "silver/stocks"))  # exact decimals


def test_spark_merge_is_continued_by_the_embedded_engine(
    spark: Any, lake: Path, tmp_path: Path
) -> None:
    from delta.tables import DeltaTable as SparkDeltaTable
    from pyspark.sql import functions as F

    silver = str(lake / "silver/stocks")
    before = {r["stock_id"]: r for r in rows(lake, "silver/stocks")}
    stock_id = min(before)
    later = spark.createDataFrame(
        [(stock_id, Decimal("1234.500000"))], "stock_id bigint, price decimal(18,6)"
    )
    (
        SparkDeltaTable.forPath(spark, silver).alias("t")
        .merge(later.alias("s"), "t.stock_id = s.stock_id")
        .whenMatchedUpdate(set={"price": "s.price", "event_time": F.expr("t.event_time + INTERVAL 1 SECOND")})
        .execute()
    )  # fmt: skip
    after_spark = {r["stock_id"]: r for r in rows(lake, "silver/stocks")}
    assert after_spark[stock_id]["price"] == Decimal(
        "1234.500000"
    )  # deltalake reads Spark's commit

    # the embedded engine continues the same tables with a new file
    landing = tmp_path / "new.jsonl"
    event = after_spark[stock_id]["event_time"].timestamp() + 60
    landing.write_text(
        json.dumps({"stock_id": stock_id, "company_id": after_spark[stock_id]["company_id"],
                    "symbol": "NEWER", "price": "99.5", "timestamp": int(event)}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    cli_ok("run", "--stocks", str(landing), "--output", str(lake))
    final = {r["stock_id"]: r for r in rows(lake, "silver/stocks")}
    assert final[stock_id]["symbol"] == "NEWER" and final[stock_id]["price"] == Decimal("99.500000")
    assert len(final) == len(before)
    seen = spark.read.format("delta").load(silver).where(F.col("stock_id") == stock_id).first()
    assert seen["price"] == Decimal("99.500000")  # and Spark reads the embedded engine's commit


def test_deltalake_continues_a_table_spark_wrote(spark: Any, tmp_path: Path) -> None:
    import pyarrow as pa

    path = str(tmp_path / "spark_table")
    frame = spark.createDataFrame(
        [(1, Decimal("10.250000"), "2024-03-15 14:30:00")],
        "id bigint, price decimal(18,6), at string",
    ).selectExpr("id", "price", "to_timestamp(at) AS at")
    frame.write.format("delta").save(path)
    table = DeltaTable(path).to_pyarrow_table()
    write_deltalake(path, table.cast(table.schema), mode="append")
    assert spark.read.format("delta").load(path).count() == 2
    assert DeltaTable(path).to_pyarrow_table().column("price").to_pylist() == [Decimal("10.25")] * 2
    assert pa.types.is_timestamp(table.schema.field("at").type)


def test_engines_take_turns_on_one_lakehouse(spark: Any, generated: Path, tmp_path: Path) -> None:
    """embedded → Spark → embedded, and Spark → embedded → Spark, equal one engine alone."""
    from tests.spark.conftest import run_embedded, run_spark
    from tests.spark.test_parity import assert_same_tables

    files = sorted((generated / "stocks").iterdir())
    parts = [files[0::3], files[1::3], files[2::3]]
    funds = [generated / "mutual_funds"]

    def embedded(out: Path, stocks: list[Path], f: list[Path]) -> None:
        run_embedded(out, stocks, f)

    def on_spark(out: Path, stocks: list[Path], f: list[Path]) -> None:
        run_spark(spark, out, stocks, f)

    turns = {
        "alone": (embedded, embedded, embedded),
        "embedded_first": (embedded, on_spark, embedded),
        "spark_first": (on_spark, embedded, on_spark),
    }
    for name, engines in turns.items():
        for i, (run, part) in enumerate(zip(engines, parts, strict=True)):
            if name == "spark_first" and i == 1:
                # a checkpoint written by delta-rs, read by Spark's next commit
                DeltaTable(str(tmp_path / name / "silver/stocks")).create_checkpoint()
            run(tmp_path / name, part, funds if i == 0 else [])
    for name in ("embedded_first", "spark_first"):
        assert_same_tables(tmp_path / "alone", tmp_path / name)
        for table in TABLES.all():
            protocol = DeltaTable(str(tmp_path / name / table)).protocol()
            # readable and writable by both engines: no deletion vectors, no column mapping
            assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2), table
        engines = [r["engine"] for r in rows(tmp_path / name, TABLES.runs)]
        assert sorted(engines) == sorted(
            "spark" if run is on_spark else "embedded" for run in turns[name]
        )


def test_deletion_vectors_are_read_both_ways(spark: Any, generated: Path, tmp_path: Path) -> None:
    """Silver's and gold's marks (written by us) are read by Spark; Spark's own vectors (a
    DELETE on a table with the feature) are read and continued by the embedded engine."""
    from digital_finance import Lakehouse
    from digital_finance.config import RunConfig
    from digital_finance.engines.embedded import deletion_vectors

    stocks = sorted((generated / "stocks").iterdir())
    funds = [str(p) for p in sorted((generated / "mutual_funds").iterdir())]
    marks = dataclasses.replace(RunConfig(), silver_write="mark", gold_write="increment")
    lake = Lakehouse(tmp_path / "lake", marks)
    for f in stocks[:3]:
        assert lake.ingest_files(stocks=[str(f)], funds=funds).ok
    silver = tmp_path / "lake" / "silver/stocks"
    assert deletion_vectors.has_vectors(DeltaTable(str(silver)))
    ours = lake.read("silver.stocks")
    theirs = spark.read.format("delta").load(str(silver))
    assert theirs.count() == ours.num_rows
    assert sorted(r["stock_id"] for r in theirs.select("stock_id").collect()) == sorted(
        ours.column("stock_id").to_pylist()
    )
    gone = min(ours.column("stock_id").to_pylist())
    spark.sql(f"DELETE FROM delta.`{silver}` WHERE stock_id = {gone}")
    assert gone not in lake.read("silver.stocks").column("stock_id").to_pylist()
    for f in stocks[3:]:
        assert lake.ingest_files(stocks=[str(f)], funds=funds).ok
    after = spark.read.format("delta").load(str(silver))
    assert after.count() == lake.read("silver.stocks").num_rows
    assert after.count() == len(rows(tmp_path / "lake", "silver/stocks"))  # delta-rs's reading
    gold = tmp_path / "lake" / "gold/stock_fund_holdings"
    assert deletion_vectors.has_vectors(DeltaTable(str(gold)))  # its increments are marks too
    theirs_gold = spark.read.format("delta").load(str(gold))
    assert theirs_gold.count() == len(rows(tmp_path / "lake", "gold/stock_fund_holdings"))
    assert theirs_gold.count() == lake.read("gold.stock_fund_holdings").num_rows
