"""`stream --engine spark`: Structured Streaming from a real Kafka broker through the Spark engine.

The same generated records (the contract's duplicates, ties and bad records included) are
streamed by the embedded and the Spark engine; the tables must be the same, and the same as
`digital-finance run` on the records as files, whatever kills the Spark driver and whichever
engine continues the other's lakehouse.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from digital_finance import Lakehouse
from digital_finance.streaming.kafka_config import connection
from digital_finance.streaming.loop import StreamOptions
from tests.conftest import REPO
from tests.services import kafka as kafka_service
from tests.streaming.compare import run_cli, table_differences
from tests.streaming.kafka_steps import (
    assert_exactly_once,
    bronze_rows,
    fresh_topics,
    stream_args,
)
from tests.streaming.messages import Msg, messages, produce

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture(scope="module")
def msgs(tmp_path_factory: pytest.TempPathFactory) -> list[Msg]:
    """A small generated data set as messages: Spark's batches cost seconds each."""
    from digital_finance.generate import generate

    folder = tmp_path_factory.mktemp("gen-spark-stream")
    generate(folder, 5_000, 500, seed=11)
    return messages(folder)


def _positions(lake: Path) -> int:
    if not (lake / "_system" / "batches").exists():
        return 0
    return sum(Lakehouse(lake).stream_positions("kafka").values())


def test_the_spark_stream_gives_the_embedded_streams_tables(
    spark: Any, kafka_broker: kafka_service.Kafka, msgs: list[Msg], tmp_path: Path
) -> None:
    """Parity: one topic, each engine's stream into its own lakehouse, the same tables."""
    from digital_finance.engines.spark.stream import SparkKafkaStream

    topics = fresh_topics(kafka_broker)
    produce(kafka_broker.bootstrap, msgs, topics)
    embedded = tmp_path / "embedded"
    done = run_cli(stream_args(kafka_broker, topics, embedded, "--once"))
    assert done.returncode == 0, done.stderr

    lake = Lakehouse(tmp_path / "spark", engine="spark", spark=spark)
    conn = connection(kafka_broker.bootstrap, {})
    by_topic = {t: d for d, t in topics.items()}
    options = StreamOptions(once=True, max_batch_records=2_500)
    totals = SparkKafkaStream(lake, spark, conn, by_topic, "parity", options).run(lambda: False)
    assert totals.batches >= 2, totals  # the bound per trigger cut the backlog
    assert totals.records == len(msgs)
    assert table_differences(embedded, tmp_path / "spark") == []
    assert bronze_rows(tmp_path / "spark") == len(msgs)
    source = lake.read("bronze.stocks", columns=["source"])["source"].to_pylist()
    assert set(source) == {"kafka"}
    assert not list((tmp_path / "spark" / "_system" / "spool").glob("*.parquet"))

    # started again, from the tables: nothing is new, nothing is written
    again = SparkKafkaStream(lake, spark, conn, by_topic, "parity", options).run(lambda: False)
    assert (again.batches, again.records) == (0, 0)
    assert bronze_rows(tmp_path / "spark") == len(msgs)


def test_a_failing_batch_stops_the_spark_stream_with_its_own_error(
    spark: Any, kafka_broker: kafka_service.Kafka, msgs: list[Msg], tmp_path: Path
) -> None:
    """A `fail` rule that fires inside `foreachBatch` comes out as the rule's error (exit 2
    from the CLI), not as Spark's wrapper, and nothing of the batch is committed."""
    from digital_finance.config import load_config
    from digital_finance.engines.spark.stream import SparkKafkaStream
    from digital_finance.runs.report import RuleFailedError

    topics = fresh_topics(kafka_broker)
    produce(kafka_broker.bootstrap, msgs[:500], topics)
    rules = tmp_path / "fail.toml"
    rules.write_text(
        '[[expectations]]\nname = "never_true"\ndataset = "stocks"\ncondition = "1 = 0"\n'
        'action = "fail"\n',
        encoding="utf-8",
    )
    lake = Lakehouse(tmp_path / "lake", load_config(rules), engine="spark", spark=spark)
    conn = connection(kafka_broker.bootstrap, {})
    by_topic = {t: d for d, t in topics.items()}
    stream = SparkKafkaStream(lake, spark, conn, by_topic, "fails", StreamOptions(once=True))
    with pytest.raises(RuleFailedError, match="never_true"):
        stream.run(lambda: False)
    assert not (tmp_path / "lake" / "bronze").exists()


def _spark_process(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    # its own process group: the kill takes Spark's JVM with the Python driver at once
    with open(log, "ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ},
            start_new_session=True,
        )  # fmt: skip


def _wait_for_line(process: subprocess.Popen[bytes], log: Path, text: str, after: int) -> None:
    """Until the log, past its first `after` bytes, shows `text` (the query is up)."""
    deadline = time.monotonic() + 240
    while text not in log.read_bytes()[after:].decode(errors="replace"):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} within 240 s"
        time.sleep(0.2)


def _wait_for_claimed_batch(process: subprocess.Popen[bytes], lake: Path, log: Path) -> None:
    """Until the lakehouse holds a batch claimed and not yet finished."""
    from digital_finance.lakehouse.storage import location
    from digital_finance.runs.abandon import unfinished_batch

    deadline = time.monotonic() + 240
    while unfinished_batch(location(lake)) is None:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the Spark stream claimed no batch within 240 s"
        time.sleep(0.1)


def test_a_killed_spark_driver_and_hand_overs_between_engines_lose_and_double_nothing(
    kafka_broker: kafka_service.Kafka, msgs: list[Msg], tmp_path: Path
) -> None:
    """The embedded stream begins; the Spark stream continues from its positions, is
    SIGKILLed at random moments five times and restarted while more records arrive; the
    embedded stream takes the rest. Every record is in the tables once, as `run` makes them."""
    from digital_finance.lakehouse.storage import location
    from digital_finance.runs.abandon import unfinished_batch

    topics = fresh_topics(kafka_broker)
    lake, log = tmp_path / "lake", tmp_path / "spark.log"
    third = len(msgs) // 3
    produce(kafka_broker.bootstrap, msgs[:third], topics)
    first = run_cli(stream_args(kafka_broker, topics, lake, "--once"))
    assert first.returncode == 0, first.stderr
    assert _positions(lake) == third

    spark = stream_args(kafka_broker, topics, lake, "--engine", "spark", "--trigger", "0")
    slices = [msgs[third + n * third // 5 : third + (n + 1) * third // 5] for n in range(5)]
    rng = random.Random(20261206)
    cut_mid_batch = 0
    for n, piece in enumerate(slices):
        produce(kafka_broker.bootstrap, piece, topics)  # more arrives while it crashes
        seen = log.stat().st_size if log.exists() else 0
        process = _spark_process(spark, log)
        # the kill falls at a random moment once the query runs: in a batch's staging, its
        # commits, or between batches (a start first finishes what the last kill left)
        _wait_for_line(process, log, "Spark stream started", seen)
        if n == len(slices) - 1 and not cut_mid_batch:
            # chance alone missed every batch: the last kill waits for a claimed batch, so
            # the restart's finishing of an interrupted batch is always exercised
            _wait_for_claimed_batch(process, lake, log)
        else:
            time.sleep(rng.uniform(0.0, 15.0))  # within the first micro-batch or two
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        cut_mid_batch += unfinished_batch(location(lake)) is not None
    assert cut_mid_batch >= 1, log.read_text()[-3000:]  # a kill fell between claim and done
    assert _positions(lake) > third, "the Spark stream committed nothing between the kills"

    caught_up = run_cli([*spark, "--once"], timeout=600)
    assert caught_up.returncode == 0, caught_up.stdout + caught_up.stderr
    assert _positions(lake) == 2 * third
    assert "finished after an interruption" in log.read_text() + caught_up.stderr

    produce(kafka_broker.bootstrap, msgs[2 * third :], topics)
    last = run_cli(stream_args(kafka_broker, topics, lake, "--once"))
    assert last.returncode == 0, last.stderr
    assert_exactly_once(lake, msgs, tmp_path)
