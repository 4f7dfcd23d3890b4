"""The seed's PySpark job, reproduced for the benchmark: the plain work, done the plain way.

    python bench/seed_pyspark_job.py --stocks 'DIR/stocks/*' --funds 'DIR/mutual_funds/*' \\
        --out /tmp/seed-out

Read both inputs with `spark.read.json`, `dropDuplicates()` on whole rows, `to_timestamp` on
the event-time columns, an inner join on `company_id`, and `write.parquet(mode="overwrite")` --
what the original seed did, with the original seed's semantics (no contract rules, no
quarantine, no latest-wins de-duplication). It is the baseline the pipeline is timed against,
not a reference for results.

Two settings differ from a bare Spark 4 session, both to keep the seed's behaviour:

* The schema. The seed let Spark infer it, but inference fails on realistic input: a single
  record that names a key twice (`{"price": 1, "price": 2}`) stops the read with
  `COLUMN_ALREADY_EXISTS`, whatever the parse mode (`--schema infer` shows it). On this input
  inference would type every contract column as a string anyway (integers mixed with digit
  strings, numbers with numeric strings, ISO strings with epoch numbers), so the job passes
  exactly that schema. It saves Spark the inference pass over the data, which makes the
  comparison conservative (PySpark gets faster than the seed was).
* ANSI mode off, as in Spark 3 where the seed ran: `to_timestamp` gives null for a string it
  cannot parse instead of failing the job.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from digital_finance.contract.schemas import FUNDS, STOCKS

# the columns schema inference would find in the generated input
STOCK_FIELDS = STOCKS.field_names
FUND_FIELDS = FUNDS.field_names


def _strings(names: tuple[str, ...]) -> StructType:
    return StructType([StructField(name, StringType(), True) for name in names])


# Errors only, on stderr: the timed job should not spend its time writing INFO/WARN lines.
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""


def build_session(driver_memory: str, shuffle_partitions: int) -> SparkSession:
    """A local session sized for a small machine, with the UI and the chatter switched off."""
    log_config = Path(tempfile.gettempdir()) / "digital-finance-seed-job-log4j2.properties"
    log_config.write_text(_LOG4J2, encoding="utf-8")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (
        SparkSession.builder.appName("digital-finance-seed-job")
        .master("local[*]")
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={log_config}")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run(spark: SparkSession, stocks: str, funds: str, out: str, infer: bool = False) -> None:
    """The seed's transformation."""
    if infer:
        stocks_df = spark.read.json(stocks)
        funds_df = spark.read.json(funds)
    else:
        stocks_df = spark.read.json(stocks, schema=_strings(STOCK_FIELDS))
        funds_df = spark.read.json(funds, schema=_strings(FUND_FIELDS))

    stocks_df = stocks_df.dropDuplicates()
    funds_df = funds_df.dropDuplicates()

    stocks_df = stocks_df.withColumn("timestamp", F.to_timestamp(F.col("timestamp")))
    funds_df = funds_df.withColumn("as_of", F.to_timestamp(F.col("as_of")))

    joined = funds_df.join(stocks_df, on="company_id", how="inner")
    joined.write.parquet(out, mode="overwrite")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stocks", required=True, help="path or glob of the stock files")
    parser.add_argument("--funds", required=True, help="path or glob of the fund files")
    parser.add_argument("--out", required=True, help="output folder (overwritten)")
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--shuffle-partitions", type=int, default=4)
    parser.add_argument(
        "--schema",
        choices=("strings", "infer"),
        default="strings",
        help="strings: the schema inference gives on this input (default); infer: let Spark "
        "infer it, as the seed did (fails on a record with a duplicate key)",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    spark = build_session(args.driver_memory, args.shuffle_partitions)
    try:
        run(spark, args.stocks, args.funds, args.out, infer=args.schema == "infer")
    finally:
        spark.stop()
    print(f"seed job done in {time.perf_counter() - started:.1f}s -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
