"""A seed-faithful Structured Streaming job: Kafka → `from_json` → timestamps → Delta append.

    python bench/seed_structured_streaming.py --bootstrap-servers HOST:PORT --topic T \\
        --out /tmp/ss-out [--trigger available-now|SECONDS]

What a PySpark team would write first for the streaming half of the seed: Spark's Kafka
source from the earliest offsets, each value parsed with `from_json` against the columns as
strings (what inference gives on this input, as in `seed_pyspark_job.py`), `to_timestamp` on
the event time, appended to a Delta table with a checkpoint, on `local[2]`. No exact decimals,
no quarantine, no de-duplication, no MERGE: the baseline the stream is timed against, not a
reference for results. With `available-now` (the default) it reads the backlog and stops;
the bench times it from process start to exit, as it times ours.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from seed_pyspark_job import STOCK_FIELDS, _strings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from pyspark.sql import functions as F

    from digital_finance.engines.spark.jars import delta_jars, kafka_jars
    from digital_finance.engines.spark.session import local_session

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--out", required=True, help="Delta table folder (replaced)")
    parser.add_argument("--trigger", default="available-now", help="available-now or SECONDS")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    out = Path(args.out)
    checkpoint = Path(str(out) + "-checkpoint")
    for folder in (out, checkpoint):  # a fresh query: a checkpoint left would resume it
        shutil.rmtree(folder, ignore_errors=True)
    cache = ROOT / ".cache" / "spark-jars"
    jars = ",".join(str(j) for j in [*delta_jars(cache), *kafka_jars(cache)])
    spark = local_session(
        ROOT / ".cache", conf={"spark.jars": jars, "spark.sql.ansi.enabled": "false"}
    )
    try:
        events = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", args.bootstrap_servers)
            .option("subscribe", args.topic)
            .option("startingOffsets", "earliest")
            .load()
            .select(F.from_json(F.col("value").cast("string"), _strings(STOCK_FIELDS)).alias("r"))
            .select("r.*")
            .withColumn("timestamp", F.to_timestamp(F.col("timestamp")))
        )
        writer = events.writeStream.format("delta").option("checkpointLocation", str(checkpoint))
        if args.trigger == "available-now":
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=f"{float(args.trigger)} seconds")
        query = writer.start(str(out))
        query.awaitTermination()
        rows = spark.read.format("delta").load(str(out)).count()
    finally:
        spark.stop()
    print(f"structured streaming job: {rows} rows in {time.perf_counter() - started:.1f}s",
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
