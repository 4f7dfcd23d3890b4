"""The durable log as a stream feed: where it starts, how it waits, and a real stream of it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from digital_finance.api import Lakehouse
from digital_finance.errors import TerminalError
from digital_finance.service.durable_log import DurableLog
from digital_finance.service.log_feed import LogFeed
from digital_finance.service.log_reader import LogReader
from digital_finance.streaming.loop import StreamLoop, StreamOptions


@pytest.fixture
def log(tmp_path: Path) -> Iterator[DurableLog]:
    with DurableLog(tmp_path / "log") as opened:
        yield opened


def _fill(log: DurableLog, dataset: str, count: int) -> None:
    log.submit(dataset, [b"%s %d" % (dataset.encode(), n) for n in range(count)]).result(10)


class Row(NamedTuple):
    dataset: str
    partition: str
    position: int
    value: bytes


def _poll(feed: LogFeed, timeout: float, limit: int) -> list[Row]:
    """What a poll gave (a table), as rows."""
    return [Row(**row) for row in feed.poll(timeout, limit).to_pylist()]


def _started(log: DurableLog, positions: dict[str, int] | None = None) -> LogFeed:
    feed = LogFeed(log)
    feed.start(lambda: dict(positions or {}))
    return feed


def test_each_dataset_starts_where_the_tables_stand(log: DurableLog) -> None:
    _fill(log, "stocks", 5)
    _fill(log, "mutual_funds", 3)
    stocks, funds = log.partition("stocks"), log.partition("mutual_funds")
    # another log's partition of the same dataset is not this log's business
    feed = _started(log, {stocks: 3, "api-0123456789ab/stocks": 99})
    got = _poll(feed, 0, 100)
    assert sorted((m.partition, m.position, m.value) for m in got) == [
        (funds, 0, b"mutual_funds 0"),
        (funds, 1, b"mutual_funds 1"),
        (funds, 2, b"mutual_funds 2"),
        (stocks, 3, b"stocks 3"),
        (stocks, 4, b"stocks 4"),
    ]
    assert {m.dataset for m in got if m.partition == stocks} == {"stocks"}
    assert feed.caught_up() and feed.assigned() and feed.revoked() == set()
    assert feed.high_watermarks() == {stocks: 5, funds: 3}
    _fill(log, "stocks", 1)
    assert not feed.caught_up()
    assert [(m.position, m.value) for m in _poll(feed, 0, 100)] == [(5, b"stocks 0")]
    assert feed.caught_up()


def test_a_fresh_log_and_fresh_tables_start_at_zero(log: DurableLog) -> None:
    feed = _started(log)
    assert feed.caught_up() and _poll(feed, 0, 10) == []
    _fill(log, "mutual_funds", 2)
    assert [m.position for m in _poll(feed, 0, 10)] == [0, 1]


def test_a_busy_dataset_does_not_starve_a_quiet_one(log: DurableLog) -> None:
    _fill(log, "stocks", 1_000)
    _fill(log, "mutual_funds", 1_000)
    feed = _started(log)
    first = _poll(feed, 0, 10)
    assert [m.dataset for m in first].count("mutual_funds") == 5
    assert len(first) == 10
    # what one dataset does not need goes to the other
    feed = _started(log, {log.partition("mutual_funds"): 998})
    for _ in range(2):  # whichever dataset's turn comes first
        got = _poll(feed, 0, 10)
        assert len(got) == 10
        feed = _started(log, {log.partition("mutual_funds"): 998})
    assert [m.dataset for m in got].count("mutual_funds") == 2


def test_poll_waits_its_timeout_when_there_is_nothing(log: DurableLog) -> None:
    feed = _started(log)
    started = time.monotonic()
    assert _poll(feed, 0.3, 10) == []
    waited = time.monotonic() - started
    assert 0.28 <= waited < 0.6, waited


def test_poll_wakes_as_soon_as_a_record_is_durable(log: DurableLog) -> None:
    feed = _started(log)
    threading.Timer(0.1, lambda: log.submit("stocks", [b"now"])).start()
    started = time.monotonic()
    got = _poll(feed, 10.0, 10)
    assert [(m.position, m.value) for m in got] == [(0, b"now")]
    assert time.monotonic() - started < 1.0


def test_tables_ahead_of_the_log_or_behind_its_start_stop_the_stream(tmp_path: Path) -> None:
    now = [1_000_000.0]
    with DurableLog(
        tmp_path / "log", segment_bytes=64, idempotency_seconds=10, clock=lambda: now[0]
    ) as log:
        _fill(log, "stocks", 2)
        with pytest.raises(TerminalError, match="does not match the lakehouse"):
            _started(log, {log.partition("stocks"): 3})
        _fill(log, "stocks", 2)
        now[0] += 11
        assert log.trim({"stocks": 2}) == 1
        with pytest.raises(TerminalError, match=r"records 1 to 1 .* no longer in the log"):
            _started(log, {log.partition("stocks"): 1})
        # not known to the tables: from the first record the log still holds
        feed = _started(log)
        assert [m.position for m in _poll(feed, 0, 10)] == [2, 3]


def test_committed_batches_trim_the_log_now_and_then(tmp_path: Path) -> None:
    unix, monotonic = [1_000_000.0], [0.0]
    with DurableLog(
        tmp_path / "log", segment_bytes=64, idempotency_seconds=10, clock=lambda: unix[0]
    ) as log:
        for _ in range(3):
            _fill(log, "stocks", 2)  # a segment each
        unix[0] += 11
        feed = LogFeed(log, trim_every_seconds=5, clock=lambda: monotonic[0])
        feed.start(dict)
        held = _poll(feed, 0, 100)
        ends = {log.partition("stocks"): held[-1].position + 1, "kafka-topic/0": 7}
        feed.done(ends)
        assert log.first_position("stocks") == 0, "trimmed before its interval"
        monotonic[0] += 5
        feed.done(ends)
        assert log.first_position("stocks") == 4  # all but the segment being written
        feed.close()
        assert not log.closed, "the service owns the log"


def _stock(n: int) -> bytes:
    return json.dumps(
        {
            "stock_id": n,
            "company_id": 1,
            "symbol": f"S{n}",
            "price": "10.5",
            "timestamp": "2024-03-15T14:30:00Z",
        }
    ).encode()


def test_a_stream_of_the_log_ingests_each_record_once(tmp_path: Path) -> None:
    lake = Lakehouse(tmp_path / "lake")
    options = StreamOptions(once=True, trigger_seconds=0.2)
    with DurableLog(tmp_path / "log") as log:
        log.submit("stocks", [_stock(n) for n in range(1, 4)]).result(10)
        StreamLoop(lake, "api", lambda lake: LogFeed(log), options).run(lambda: False)
        silver = lake.read("silver.stocks", columns=["stock_id"])
        assert sorted(silver["stock_id"].to_pylist()) == [1, 2, 3]
        assert lake.stream_positions("api") == {log.partition("stocks"): 3}
        bronze = lake.read("bronze.stocks").num_rows
        log.submit("stocks", [_stock(n) for n in range(4, 6)]).result(10)
    # a restart: the same log folder, a new process's loop
    with DurableLog(tmp_path / "log") as log:
        totals = StreamLoop(lake, "api", lambda lake: LogFeed(log), options).run(lambda: False)
        assert totals.records == 2
        assert lake.read("bronze.stocks").num_rows == bronze + 2
        silver = lake.read("silver.stocks", columns=["stock_id"])
        assert sorted(silver["stock_id"].to_pylist()) == [1, 2, 3, 4, 5]
        assert lake.stream_positions("api") == {log.partition("stocks"): log.durable_end("stocks")}


def test_a_stream_of_a_reader_ingests_what_the_writer_wrote(tmp_path: Path) -> None:
    lake = Lakehouse(tmp_path / "lake")
    options = StreamOptions(once=True, trigger_seconds=0.2)
    with DurableLog(tmp_path / "log", segment_bytes=512) as log:
        for n in range(1, 7, 2):
            log.submit("stocks", [_stock(n), _stock(n + 1)]).result(10)
        with LogReader(tmp_path / "log") as reader:
            totals = StreamLoop(lake, "api", lambda lake: LogFeed(reader), options).run(
                lambda: False
            )
            assert totals.records == 6
            silver = lake.read("silver.stocks", columns=["stock_id"])
            assert sorted(silver["stock_id"].to_pylist()) == [1, 2, 3, 4, 5, 6]
            assert lake.stream_positions("api") == {reader.partition("stocks"): 6}
            assert reader.partition("stocks") == log.partition("stocks")
        # a new reader (a restarted ingest process) goes on where the tables stand
        log.submit("stocks", [_stock(7)]).result(10)
        with LogReader(tmp_path / "log") as reader:
            totals = StreamLoop(lake, "api", lambda lake: LogFeed(reader), options).run(
                lambda: False
            )
            assert totals.records == 1
            assert lake.read("bronze.stocks").num_rows == 7
            assert lake.stream_positions("api") == {log.partition("stocks"): 7}
        assert len(list((tmp_path / "log" / "stocks").glob("*.log"))) > 1
