"""`digital-finance stream --source kafka` against a real broker: exactly-once whatever dies.

Every test streams generated data (the contract's duplicates, ties and bad records
included) from its own topics and compares the lakehouse with what `digital-finance run`
gives for the same records as files (`compare.table_differences`).
"""

from __future__ import annotations

import random
import signal
import sys
import time
from pathlib import Path

import pytest

from digital_finance.api import Lakehouse
from tests.services import kafka as kafka_service
from tests.streaming.compare import run_cli
from tests.streaming.kafka_steps import (
    assert_exactly_once,
    bronze_rows,
    fresh_topics,
    start,
    stream_args,
)
from tests.streaming.messages import Msg, messages, produce

pytestmark = [pytest.mark.slow, pytest.mark.kafka]


@pytest.fixture
def broker(kafka_broker: kafka_service.Kafka) -> kafka_service.Kafka:
    return kafka_broker


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Msg]]:
    """Small and large data sets, as messages."""
    from digital_finance.generate import generate

    out = {}
    for name, stocks, funds in (("small", 20_000, 2_000), ("large", 100_000, 10_000)):
        folder = tmp_path_factory.mktemp(f"gen-{name}")
        generate(folder, stocks, funds, seed=11)
        out[name] = messages(folder)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    """The metrics endpoint's samples: series (with labels) -> value."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _high_watermarks(broker: kafka_service.Kafka, topics: dict[str, str]) -> dict[str, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "watermarks", "log_level": 0})
    try:
        ends = {}
        for topic in topics.values():
            for p in range(4):
                _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                ends[f"{topic}/{p}"] = high
        return ends
    finally:
        c.close()


def _wait_caught_up(lake: Path, ends: dict[str, int], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (lake / "_system" / "batches").exists():
            at = Lakehouse(lake).stream_positions("kafka")
            if all(at.get(p, 0) >= end for p, end in ends.items() if end > 0):
                return
        time.sleep(0.5)
    raise AssertionError(f"the stream did not reach {ends} within {timeout} s")


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_once_equals_a_batch_run_and_a_second_once_changes_nothing(
    broker: kafka_service.Kafka, generated: dict[str, list[Msg]], tmp_path: Path, protocol: str
) -> None:
    """With the classic group protocol and with the next generation's (KIP-848)."""
    msgs = generated["small"]
    topics = fresh_topics(broker)
    produce(broker.bootstrap, msgs, topics)
    lake = tmp_path / "lake"
    config = tmp_path / "stream.toml"
    config.write_text(f'[stream.kafka]\noptions = {{ "group.protocol" = "{protocol}" }}\n')
    first = run_cli(
        stream_args(
            broker, topics, lake, "--once", "--max-batch-records", "4000", "--config", str(config)
        )
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "caught up" in first.stderr
    assert_exactly_once(lake, msgs, tmp_path)
    # lineage: the partition and the offset stand where a file's path and line stand
    from deltalake import DeltaTable

    bronze = DeltaTable(str(lake / "bronze" / "stocks")).to_pyarrow_table(
        columns=["source", "source_file", "line_number"]
    )
    assert set(bronze["source"].to_pylist()) == {"kafka"}
    assert {s.rsplit("/", 1)[0] for s in bronze["source_file"].to_pylist()} == {topics["stocks"]}
    assert min(bronze["line_number"].to_pylist()) == 0
    batches_before = Lakehouse(lake).read("_system.pipeline_runs").num_rows
    again = run_cli(stream_args(broker, topics, lake, "--once", "--config", str(config)))
    assert again.returncode == 0, again.stderr
    assert Lakehouse(lake).read("_system.pipeline_runs").num_rows == batches_before
    assert bronze_rows(lake) == len(msgs)
    assert not list((lake / "_system" / "spool").glob("*.parquet")), "spool files left behind"


def test_sigkill_at_random_moments_then_restart_gives_the_batch_result(
    broker: kafka_service.Kafka, generated: dict[str, list[Msg]], tmp_path: Path
) -> None:
    msgs = generated["large"]
    assert len(msgs) >= 100_000
    topics = fresh_topics(broker)
    lake, log = tmp_path / "lake", tmp_path / "stream.log"
    # static membership: a restarted consumer takes its partitions back at once, instead
    # of waiting for the killed one's session to time out
    config = tmp_path / "stream.toml"
    config.write_text(
        '[stream.kafka]\noptions = { "group.instance.id" = "the-one", "session.timeout.ms" = "6000" }\n'
    )
    args = stream_args(
        broker,
        topics,
        lake,
        "--trigger",
        "0.3",
        "--max-batch-records",
        "2000",
        "--config",
        str(config),
    )
    rng = random.Random(20261202)
    half = len(msgs) // 2
    produce(broker.bootstrap, msgs[:half], topics)
    progressed = 0  # kills while the stream was working
    reached = 0
    for round_ in range(12):
        if round_ == 5:
            produce(broker.bootstrap, msgs[half:], topics)  # more arrives while it crashes
        process = start(args, log)
        time.sleep(rng.uniform(2.0, 3.5))
        assert process.poll() is None, log.read_text()[-3000:]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        now = (
            sum(Lakehouse(lake).stream_positions("kafka").values())
            if (lake / "_system").exists()
            else 0
        )
        # a kill that fell while the stream was working: it had committed since the last
        # kill, and records were still waiting
        progressed += reached < now < len(msgs)
        reached = now
    assert progressed >= 6, log.read_text()[-3000:]
    final = run_cli([*args, "--once"], timeout=600)
    assert final.returncode == 0, final.stdout + final.stderr
    _wait_caught_up(lake, _high_watermarks(broker, topics), timeout=5)
    assert_exactly_once(lake, msgs, tmp_path)


def test_a_crash_after_the_claim_is_finished_from_the_spool(
    broker: kafka_service.Kafka, generated: dict[str, list[Msg]], tmp_path: Path
) -> None:
    msgs = generated["small"]
    topics = fresh_topics(broker)
    produce(broker.bootstrap, msgs, topics)
    lake = tmp_path / "lake"
    for point in ("after_plan", "before_silver_stocks", "before_run_log"):
        crashed = run_cli(
            stream_args(broker, topics, lake, "--once", "--max-batch-records", "3000"),
            env={"DIGITAL_FINANCE_CRASH_AT": point},
        )
        assert crashed.returncode == 137, crashed.stderr
        assert list((lake / "_system" / "spool").glob("*.parquet")), (
            "the claimed batch has no spool file"
        )
    # the next writer is a batch `run` on an unrelated, empty input: it finishes the batch
    empty = tmp_path / "empty.ndjson"
    empty.write_text("")
    ran = run_cli(
        [
            sys.executable,
            "-m",
            "digital_finance",
            "run",
            "--stocks",
            str(empty),
            "--output",
            str(lake),
        ]
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "resumed" in ran.stdout
    done = run_cli(stream_args(broker, topics, lake, "--once"))
    assert done.returncode == 0, done.stderr
    assert_exactly_once(lake, msgs, tmp_path)


def test_a_broker_restart_mid_stream_loses_and_doubles_nothing(
    broker: kafka_service.Kafka, generated: dict[str, list[Msg]], tmp_path: Path
) -> None:
    msgs = generated["small"]
    topics = fresh_topics(broker)
    lake, log = tmp_path / "lake", tmp_path / "stream.log"
    half = len(msgs) // 2
    produce(broker.bootstrap, msgs[:half], topics)
    port = _free_port()
    args = stream_args(broker, topics, lake, "--trigger", "0.3", "--metrics-port", str(port))
    process = start(args, log)
    try:
        time.sleep(3)
        broker.restart(kill=True)
        produce(broker.bootstrap, msgs[half:], topics)
        _wait_caught_up(lake, _high_watermarks(broker, topics))
        time.sleep(1.0)  # the metrics of the last batch are set right after its commit
        metrics = _scrape(port)
        records = sum(
            v for k, v in metrics.items() if k.startswith("digital_finance_stream_records_total")
        )
        assert records == len(msgs), metrics
        lags = [v for k, v in metrics.items() if k.startswith("digital_finance_stream_lag{")]
        assert lags and max(lags) == 0, metrics
        assert metrics['digital_finance_stream_batches_total{status="succeeded"}'] >= 2
        assert any(
            k.startswith("digital_finance_stream_quarantined_total{") and v > 0
            for k, v in metrics.items()
        )
        assert metrics["digital_finance_stream_event_to_silver_seconds_count"] >= 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    assert_exactly_once(lake, msgs, tmp_path)


def test_two_consumers_in_one_group_one_killed_and_restarted(
    broker: kafka_service.Kafka, generated: dict[str, list[Msg]], tmp_path: Path
) -> None:
    msgs = generated["large"]
    topics = fresh_topics(broker)
    lake = tmp_path / "lake"
    # a killed member's partitions move on after its session times out: 6 s, not 45
    config = tmp_path / "stream.toml"
    config.write_text(
        '[stream.kafka]\noptions = { "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }\n'
    )
    args = stream_args(
        broker,
        topics,
        lake,
        "--trigger",
        "0.3",
        "--max-batch-records",
        "3000",
        "--config",
        str(config),
    )
    produce(broker.bootstrap, msgs[: len(msgs) // 3], topics)
    a = start(args, tmp_path / "a.log")
    b = start(args, tmp_path / "b.log")
    try:
        time.sleep(4)
        produce(broker.bootstrap, msgs[len(msgs) // 3 :], topics)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
        time.sleep(2)
        a = start(args, tmp_path / "a.log")
        _wait_caught_up(lake, _high_watermarks(broker, topics), timeout=300)
        for p in (a, b):
            p.send_signal(signal.SIGTERM)
        assert a.wait(timeout=60) == 0, (tmp_path / "a.log").read_text()[-3000:]
        assert b.wait(timeout=60) == 0, (tmp_path / "b.log").read_text()[-3000:]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    both = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert "batch" in both
    assert_exactly_once(lake, msgs, tmp_path)


def test_two_streams_in_different_groups_write_each_record_once(
    broker: kafka_service.Kafka, generated: dict[str, list[Msg]], tmp_path: Path
) -> None:
    """Two streams that both read every partition (two groups: a failover started too
    early, a copy-pasted job) hold every record twice; the tables hold it once."""
    msgs = generated["small"]
    topics = fresh_topics(broker)
    lake = tmp_path / "lake"
    base = stream_args(broker, topics, lake, "--trigger", "0.2", "--max-batch-records", "1500")
    group = base.index("--group") + 1
    first, second = list(base), list(base)
    first[group], second[group] = "copy-one", "copy-two"
    produce(broker.bootstrap, msgs, topics)
    a, b = start(first, tmp_path / "a.log"), start(second, tmp_path / "b.log")
    try:
        _wait_caught_up(lake, _high_watermarks(broker, topics))
        for p in (a, b):
            p.send_signal(signal.SIGTERM)
        assert a.wait(timeout=60) == 0, (tmp_path / "a.log").read_text()[-3000:]
        assert b.wait(timeout=60) == 0, (tmp_path / "b.log").read_text()[-3000:]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    assert_exactly_once(lake, msgs, tmp_path)


def test_a_poison_message_is_quarantined_and_never_blocks_its_partition(
    broker: kafka_service.Kafka, tmp_path: Path
) -> None:
    """50 MB of not-JSON, a record of wrong types and a broken one, between good records of
    the same partition: each poison is a quarantine row, the good ones reach silver."""
    from confluent_kafka import Producer
    from deltalake import DeltaTable

    topics = fresh_topics(broker)

    def good(i: int) -> bytes:
        return (
            f'{{"stock_id": {i}, "company_id": 7, "symbol": "S{i}", "price": "1.25", '
            f'"volume": 3, "exchange": "NYSE", "currency": "USD", '
            f'"timestamp": "2024-03-15T14:30:00Z"}}'
        ).encode()

    poison = [
        b"x" * (50 * 2**20),  # 50 MB, not JSON
        b'{"stock_id": "seven", "company_id": [], "price": true}',  # wrong types
        b'{"stock_id": 1, "price": ',  # cut off
    ]
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "message.max.bytes": 62914560, "log_level": 0}
    )
    sent = [good(1), poison[0], good(2), poison[1], good(3), poison[2], good(4)]
    for value in sent:  # one key: one partition, in this order
        producer.produce(topics["stocks"], key=b"same", value=value)
    assert producer.flush(60) == 0
    lake = tmp_path / "lake"
    done = run_cli(stream_args(broker, topics, lake, "--once"))
    assert done.returncode == 0, done.stderr
    quarantine = DeltaTable(str(lake / "quarantine" / "stocks")).to_pyarrow_table().to_pylist()
    reasons = sorted(r["reason"] for r in quarantine)
    assert len(quarantine) == 3, reasons
    assert "record_too_large" in reasons
    big = next(r for r in quarantine if r["reason"] == "record_too_large")
    assert len(big["raw"]) == 4096  # its first bytes stand for it
    silver = DeltaTable(str(lake / "silver" / "stocks")).to_pyarrow_table(columns=["stock_id"])
    assert sorted(silver["stock_id"].to_pylist()) == [1, 2, 3, 4]


def _peak_rss_mib(args: list[str], log: Path) -> float:
    """Run a command to its end; the largest resident size it reached, sampled."""
    import psutil

    process = start(args, log)
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    assert process.returncode == 0, log.read_text()[-3000:]
    return peak / 2**20


def test_memory_does_not_grow_with_the_backlog(
    broker: kafka_service.Kafka, generated: dict[str, list[Msg]], tmp_path: Path
) -> None:
    """A backlog three times larger, read by a sink slower than the source (small batches),
    peaks at about the same memory: the consumer's fetch queue and one batch are bounded."""
    stocks = [m for m in generated["large"] if m.dataset == "stocks"]
    peaks = {}
    for copies in (2, 6):
        topics = fresh_topics(broker)
        produce(broker.bootstrap, stocks * copies, topics)
        lake = tmp_path / f"lake-{copies}"
        config = tmp_path / "bounded.toml"
        # librdkafka's fetch queue: at most this much ahead of the pipeline
        config.write_text('[stream.kafka]\noptions = { "queued.max.messages.kbytes" = "16384" }\n')
        args = stream_args(
            broker, topics, lake, "--once", "--max-batch-records", "20000", "--config", str(config)
        )
        peaks[copies] = _peak_rss_mib(args, tmp_path / f"stream-{copies}.log")
        assert bronze_rows(lake) == len(stocks) * copies
    print(
        f"peak RSS: {peaks[2]:.0f} MiB for {2 * len(stocks):,} events, {peaks[6]:.0f} MiB for {6 * len(stocks):,}"
    )
    assert peaks[6] < peaks[2] * 1.2, peaks
    assert peaks[6] < 1024, peaks
