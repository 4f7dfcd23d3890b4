"""Rebuild gold `stock_fund_holdings` from the silver tables on Spark (as the embedded engine)."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from digital_finance.definition.steps import JoinGold
from digital_finance.engines.spark import delta_writes
from digital_finance.lakehouse.layout import table_uri


def rebuild(spark: SparkSession, root: str, step: JoinGold, batch_id: int) -> tuple[int, int]:
    """Overwrite gold; returns (rows written or -1 when already done, holdings without stock)."""
    holdings = delta_writes.read(spark, table_uri(root, step.holdings))
    stocks = delta_writes.read(spark, table_uri(root, step.stocks))
    if holdings is None or stocks is None:
        return 0, 0
    h, s = holdings.alias("h"), stocks.alias("s")
    orphans = h.join(s, on=step.on, how="left_anti").count()
    columns = [
        F.col(f"s.{c}" if c in step.from_stocks else f"h.{c}").alias(c) for c in step.columns
    ]
    joined = h.join(s, F.col(f"h.{step.on}") == F.col(f"s.{step.on}")).select(
        *columns, F.lit(batch_id).cast("bigint").alias("_batch_id")
    )
    rows = delta_writes.write(joined, table_uri(root, step.table), batch_id, "overwrite")
    return (-1 if rows is None else rows), orphans
