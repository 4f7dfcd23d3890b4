"""Streaming catch-up: how fast a topic's backlog reaches silver, beside a bare consumer.

    .venv/bin/python bench/stream_catchup.py                     # 1M stock events, 3 pairs
    .venv/bin/python bench/stream_catchup.py --events 200000 --pairs 2

Starts a local Kafka broker (KRaft, the jars `make setup` fetched), produces the generated
stock events (the contract's duplicates and bad records included, keyed by `stock_id`) to a
topic of 4 partitions once, then times, in pairs run one after the other on the same topic:
- **the ceiling**: a bare confluent-kafka `consume()` loop reading every message and
  dropping it (a new consumer group each time);
- **ours**: `digital-finance stream --source kafka --once` into a fresh lakehouse (a new
  group each time), from the process start to its exit: every batch through bronze, the
  contract, quarantine, silver MERGE and gold, committed.

With `--spark-peer`, each pair also times the seed-faithful Structured Streaming job; with
`--our-spark`, our own stream on the Spark engine (`stream --engine spark --once`, local[2]):
Structured Streaming reading the topic, each micro-batch through the Spark engine.

Printed: per pair, both times and events/s, and the median and spread of our rate and of
its share of the ceiling (bare time / our time); written to `bench/results/stream_catchup.json`.
Our time includes the process start (about 1 s of imports and the consumer group join).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pairs import compared as compared_to  # noqa: E402
from bench.pairs import write_results  # noqa: E402
from tests.services import kafka  # noqa: E402
from tests.streaming.messages import messages, produce  # noqa: E402


def bare_consume(bootstrap: str, topic: str, total: int) -> float:
    """Seconds a plain consumer takes to read `total` messages of `topic` (partitions
    assigned directly: no group join in the time)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"bare-{uuid.uuid4().hex[:6]}",
         "enable.auto.commit": False, "log_level": 0,
         # as our feed sets it: librdkafka's default (1 s) idles a catch-up's fetcher
         "fetch.queue.backoff.ms": 10}
    )  # fmt: skip
    started = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(4)])
    seen = 0
    while seen < total:
        for msg in consumer.consume(num_messages=10_000, timeout=1.0):
            if msg.error() is None:
                seen += 1
    seconds = time.perf_counter() - started
    consumer.close()
    return seconds


def ours(
    bootstrap: str,
    topic: str,
    lake: Path,
    batch: int,
    config: Path | None,
    src: str | None = None,
    spark: bool = False,
) -> tuple[float, float]:
    """`digital-finance stream --once`: seconds from start to exit, and from the first
    batch's hand-over to the last commit (the steady part, without start-up and join).
    `src`: run the package of another checkout's `src/` instead (an A/B of a change);
    `spark`: the Spark engine's stream (`--engine spark`)."""
    shutil.rmtree(lake, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": src} if src else None
    extra = ["--engine", "spark"] if spark else []
    extra += ["--config", str(config)] if config is not None else []
    started = time.perf_counter()
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "digital-finance"), "stream", "--source", "kafka",
         "--bootstrap-servers", bootstrap, "--topic", f"{topic}=stocks", "--once",
         "--group", f"ours-{uuid.uuid4().hex[:6]}", "--max-batch-records", str(batch),
         "--output", str(lake), *extra],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"stream failed:\n{done.stderr[-3000:]}")
    # "[   4.2s] batch 1: stocks 100,000 in 0.51 s; ..." per batch
    stamps = [
        (float(m.group(1)), float(m.group(2)))
        for m in re.finditer(r"\[\s*([\d.]+)s\] batch \d+: .*? in ([\d.]+) s;", done.stderr)
    ]
    steady = stamps[-1][0] - (stamps[0][0] - stamps[0][1]) if stamps else seconds
    return seconds, steady


def structured_streaming(bootstrap: str, topic: str, out: Path) -> float:
    """Seconds the seed-faithful Structured Streaming job takes, start to exit."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "seed_structured_streaming.py"),
         "--bootstrap-servers", bootstrap, "--topic", topic, "--out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the Structured Streaming job failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100_000, help="--max-batch-records")
    parser.add_argument(
        "--protocol", default="classic", choices=["classic", "consumer"],
        help="Kafka group protocol: classic (Event Hubs too) or KIP-848's (Kafka 4+)",
    )  # fmt: skip
    parser.add_argument(
        "--spark-peer", action="store_true",
        help="also time the seed-faithful Structured Streaming job (seed_structured_streaming.py)"
        " in each pair",
    )  # fmt: skip
    parser.add_argument(
        "--our-spark", action="store_true",
        help="also time our stream on the Spark engine (stream --engine spark) in each pair",
    )  # fmt: skip
    parser.add_argument(
        "--compare-src", metavar="DIR",
        help="also time the stream of another checkout's src/ in each pair (A/B of a change)",
    )  # fmt: skip
    args = parser.parse_args()
    from digital_finance.generate import generate

    with tempfile.TemporaryDirectory(prefix="stream-bench-") as temp:
        work = Path(temp)
        generate(work / "data", args.events, 1, seed=42)
        events = [m for m in messages(work / "data") if m.dataset == "stocks"]
        broker = kafka.start(work / "kafka")
        try:
            broker.create_topic("bench", partitions=4)
            clock = time.perf_counter()
            produce(broker.bootstrap, events, {"stocks": "bench", "mutual_funds": "bench"})
            print(f"produced {len(events):,} events in {time.perf_counter() - clock:.1f} s")
            config = work / "stream.toml"
            config.write_text(
                f'[stream.kafka]\noptions = {{ "group.protocol" = "{args.protocol}" }}\n'
            )
            pairs = []
            steadies = []
            compared: list[float] = []
            spark_times: list[float] = []
            our_spark: list[tuple[float, float]] = []
            for i in range(args.pairs):
                bare = bare_consume(broker.bootstrap, "bench", len(events))
                if args.spark_peer:
                    ss = structured_streaming(broker.bootstrap, "bench", work / "ss")
                    spark_times.append(ss)
                    print(f"pair {i + 1}: Structured Streaming (availableNow) {ss:.2f} s "
                          f"({len(events) / ss:,.0f}/s)", flush=True)  # fmt: skip
                if args.our_spark:
                    whole, steady_spark = ours(
                        broker.bootstrap, "bench", work / "lake-spark", args.batch, None,
                        spark=True,
                    )  # fmt: skip
                    our_spark.append((whole, steady_spark))
                    print(f"pair {i + 1}: stream --engine spark --once {whole:.2f} s "
                          f"({len(events) / whole:,.0f}/s; first batch to last commit "
                          f"{steady_spark:.2f} s)", flush=True)  # fmt: skip
                if args.compare_src:
                    other, _ = ours(broker.bootstrap, "bench", work / "lake", args.batch, config,
                                    args.compare_src)  # fmt: skip
                    compared.append(other)
                    print(f"pair {i + 1}: {args.compare_src} stream --once {other:.2f} s "
                          f"({len(events) / other:,.0f}/s)", flush=True)  # fmt: skip
                mine, steady = ours(broker.bootstrap, "bench", work / "lake", args.batch, config)
                pairs.append((bare, mine))
                steadies.append(len(events) / steady)
                print(
                    f"pair {i + 1}: bare consume {bare:.2f} s ({len(events) / bare:,.0f}/s), "
                    f"stream --once {mine:.2f} s ({len(events) / mine:,.0f}/s; first batch "
                    f"to last commit {steady:.2f} s, {len(events) / steady:,.0f}/s)",
                    flush=True,
                )
        finally:
            broker.stop()
    rates = [len(events) / m for _, m in pairs]
    shares = [b / m for b, m in pairs]
    summary = {
        "events": len(events),
        "pairs": [{"bare_seconds": b, "ours_seconds": m} for b, m in pairs],
        "ours_events_per_second_median": statistics.median(rates),
        "ours_events_per_second_range": [min(rates), max(rates)],
        "share_of_ceiling_median": statistics.median(shares),
        "protocol": args.protocol,
        "steady_events_per_second_median": statistics.median(steadies),
        "steady_events_per_second_range": [min(steadies), max(steadies)],
    }
    print(
        f"ours: median {summary['ours_events_per_second_median']:,.0f} events/s "
        f"(range {min(rates):,.0f}-{max(rates):,.0f}); share of the ceiling "
        f"{statistics.median(shares):.2f} (range {min(shares):.2f}-{max(shares):.2f}); "
        f"steady {statistics.median(steadies):,.0f} events/s "
        f"(range {min(steadies):,.0f}-{max(steadies):,.0f}), {args.protocol} group protocol"
    )
    if spark_times:
        ratios = [s / m for s, (_, m) in zip(spark_times, pairs, strict=True)]
        summary["spark_seconds"] = spark_times
        summary["spark_events_per_second_median"] = statistics.median(
            [len(events) / t for t in spark_times]
        )
        summary["spark_over_ours_median"] = statistics.median(ratios)
        print(
            f"Structured Streaming: median {summary['spark_events_per_second_median']:,.0f} "
            f"events/s; its time / ours: median {statistics.median(ratios):.2f}x "
            f"(range {min(ratios):.2f}-{max(ratios):.2f})"
        )
    if our_spark:
        ratios = [w / m for (w, _), (_, m) in zip(our_spark, pairs, strict=True)]
        summary["our_spark_seconds"] = [w for w, _ in our_spark]
        summary["our_spark_events_per_second_median"] = statistics.median(
            [len(events) / w for w, _ in our_spark]
        )
        summary["our_spark_over_ours_median"] = statistics.median(ratios)
        if spark_times:
            over_seed = [w / s for (w, _), s in zip(our_spark, spark_times, strict=True)]
            summary["our_spark_over_structured_streaming_median"] = statistics.median(over_seed)
            print(
                f"our Spark stream / Structured Streaming time: median "
                f"{statistics.median(over_seed):.2f}x "
                f"(range {min(over_seed):.2f}-{max(over_seed):.2f})"
            )
        print(
            f"our Spark stream: median {summary['our_spark_events_per_second_median']:,.0f} "
            f"events/s; its time / the embedded stream's: median "
            f"{statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})"
        )
    if compared:
        compared_to(summary, args.compare_src, compared, [m for _, m in pairs])
    write_results(f"stream_catchup_{args.protocol}", summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
