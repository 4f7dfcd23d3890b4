"""Event-to-silver latency at a steady rate: produce N events/s, stream with a 1 s trigger.

    .venv/bin/python bench/stream_latency.py                          # 20k/s for 10 minutes
    .venv/bin/python bench/stream_latency.py --rate 20000 --seconds 120
    .venv/bin/python bench/stream_latency.py --engine spark --trigger 10 --rate 2000 --seconds 180
    .venv/bin/python bench/stream_latency.py --seconds 120 --keep /tmp/soak   # lake, log, worst

A local Kafka broker (KRaft) gets stock events at a steady `--rate` for `--seconds`, each
stamped with the time it was produced (an extra field, kept in silver's `_rescued`), while
`digital-finance stream --trigger 1` runs (`--engine spark`: the Spark engine's stream,
Structured Streaming on local[2], given 40 s to start before the first event). Afterwards
every event's latency is its silver commit's time (the Delta commit of its batch) minus its
production time. Printed: p50, p90, p99 and the largest over the whole run, and p99 of the
first and of the last minute (so a slowdown as the tables and their logs grow shows);
written to `bench/results/stream_latency_<engine>.json`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.services import kafka  # noqa: E402


def produce_steadily(
    bootstrap: str, topic: str, rate: int, seconds: int, stop: threading.Event
) -> int:
    """Stock events at `rate` per second, each with `produced_ns`; returns how many."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 0})
    sent = 0
    started = time.monotonic()
    stock = 0
    while not stop.is_set():
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            break
        due = int(elapsed * rate)
        while sent < due:
            stock = (stock + 1) % 50_000
            now = time.time_ns()
            value = (
                f'{{"stock_id": {stock + 1}, "company_id": {stock // 3 + 1}, "symbol": "S{stock}", '
                f'"price": "{10 + stock % 97}.{stock % 100:02d}", "volume": {sent % 1000}, '
                f'"exchange": "NYSE", "currency": "USD", "timestamp": {now // 1_000_000}, '
                f'"produced_ns": {now}}}'
            )
            try:
                producer.produce(topic, key=str(stock).encode(), value=value.encode())
            except BufferError:
                producer.poll(0.01)
                continue
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(60)
    return sent


def latencies(lake: Path) -> tuple[list[float], list[float]]:
    """Per event: (seconds from production to its silver commit, production time)."""
    commits, con = _commits_and_bronze(lake)
    rows = con.execute(
        "SELECT _batch_id, CAST(json_extract(record, '$.produced_ns') AS BIGINT) FROM b"
    ).fetchall()
    out, produced = [], []
    for batch, ns in rows:
        if ns is None or batch not in commits:
            continue
        out.append(commits[batch] - ns / 1e9)
        produced.append(ns / 1e9)
    return out, produced


def _commits_and_bronze(lake: Path) -> tuple[dict[int, float], Any]:
    """Each batch's silver commit time, and a DuckDB database with bronze as `b`."""
    import duckdb
    from deltalake import DeltaTable

    from digital_finance.lakehouse.layout import tagged_batch

    commits = {}
    for entry in DeltaTable(str(lake / "silver" / "stocks")).history():
        batch = tagged_batch(entry)  # every commit names its batch, on either engine
        if batch is not None:
            commits[int(batch)] = entry["timestamp"] / 1000.0
    bronze = DeltaTable(str(lake / "bronze" / "stocks")).to_pyarrow_table(
        columns=["record", "_batch_id"]
    )
    con = duckdb.connect()
    con.register("b", bronze)
    return commits, con


def print_slowest(lake: Path, count: int = 15) -> None:
    """The batches whose records waited longest: when they closed and what they held."""
    commits, con = _commits_and_bronze(lake)
    rows = con.execute(
        "SELECT _batch_id, count(*), "
        "min(CAST(json_extract(record, '$.produced_ns') AS BIGINT)) / 1e9, "
        "max(CAST(json_extract(record, '$.produced_ns') AS BIGINT)) / 1e9 FROM b GROUP BY 1"
    ).fetchall()
    start = min(r[2] for r in rows)
    worst = sorted((r for r in rows if r[0] in commits), key=lambda r: r[2] - commits[r[0]])
    print("slowest batches: id, events, produced from .. to (s after the first), silver commit")
    for batch, events, first, last in worst[:count]:
        print(
            f"  {batch:6d} {events:7,d}  {first - start:8.2f} .. {last - start:8.2f}  "
            f"{commits[batch] - start:8.2f}  (waited {commits[batch] - first:.2f} s at most)"
        )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--engine", choices=["embedded", "spark"], default="embedded")
    parser.add_argument("--trigger", type=float, default=1.0, help="the stream's --trigger")
    parser.add_argument(
        "--keep", type=Path, metavar="DIR",
        help="keep the lakehouse and the stream's log in DIR, and print the slowest batches",
    )  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stream-latency-") as temp:
        work = Path(temp)
        broker = kafka.start(work / "kafka")
        try:
            broker.create_topic("steady", partitions=4)
            lake = work / "lake"
            stream = subprocess.Popen(
                [str(ROOT / ".venv" / "bin" / "digital-finance"), "stream", "--source", "kafka",
                 "--bootstrap-servers", broker.bootstrap, "--topic", "steady=stocks",
                 "--trigger", str(args.trigger), "--output", str(lake), "--engine", args.engine],
                stdout=subprocess.DEVNULL, stderr=open(work / "stream.log", "wb"),  # noqa: SIM115
            )  # fmt: skip
            time.sleep(4 if args.engine == "embedded" else 40)  # joined / Spark started
            stop = threading.Event()
            sent = produce_steadily(broker.bootstrap, "steady", args.rate, args.seconds, stop)
            time.sleep(5 if args.engine == "embedded" else 60)  # the last trigger commits
            stream.send_signal(signal.SIGTERM)
            stream.wait(timeout=300)
            values, produced = latencies(lake)
            if args.keep is not None:
                shutil.rmtree(args.keep, ignore_errors=True)
                shutil.copytree(lake, args.keep / "lake")
                shutil.copy(work / "stream.log", args.keep / "stream.log")
                print_slowest(args.keep / "lake")
        finally:
            broker.stop()
    start = min(produced)
    first = [v for v, p in zip(values, produced, strict=True) if p - start < 60]
    last = [v for v, p in zip(values, produced, strict=True) if p - start >= args.seconds - 60]
    summary = {
        "engine": args.engine, "trigger": args.trigger,
        "rate": args.rate, "seconds": args.seconds, "produced": sent, "measured": len(values),
        "p50": _pct(values, 0.5), "p90": _pct(values, 0.9), "p99": _pct(values, 0.99),
        "max": max(values), "mean": statistics.fmean(values),
        "p99_first_minute": _pct(first, 0.99), "p99_last_minute": _pct(last, 0.99),
    }  # fmt: skip
    print(
        f"{args.engine}, trigger {args.trigger:g} s: "
        f"{sent:,} events at {args.rate:,}/s for {args.seconds} s ({len(values):,} measured): "
        f"p50 {summary['p50']:.2f} s, p90 {summary['p90']:.2f} s, p99 {summary['p99']:.2f} s, "
        f"max {summary['max']:.2f} s; p99 first minute {summary['p99_first_minute']:.2f} s, "
        f"last minute {summary['p99_last_minute']:.2f} s"
    )
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"stream_latency_{args.engine}.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
