"""A read-only view of a log another process writes: ends, waits, rollover, trims."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from digital_finance.errors import TerminalError
from digital_finance.service.durable_log import DurableLog
from digital_finance.service.log_feed import LogFeed
from digital_finance.service.log_reader import LogReader
from tests.conftest import REPO


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "log"


def _publish(folder: Path, *ends: int) -> None:
    """Overwrite the writer's hint, as a lagging (or lying) `durable-ends` would read."""
    (folder / "durable-ends").write_bytes(struct.pack(f"<{len(ends)}Q", *ends))


def test_a_folder_without_a_log_is_refused(folder: Path) -> None:
    with pytest.raises(TerminalError, match=r"no durable log in .*no log-id.*serve"):
        LogReader(folder).open()
    folder.mkdir()
    with pytest.raises(TerminalError, match="no log-id"):
        LogReader(folder).open()
    reader = LogReader(folder)
    assert reader.closed
    with pytest.raises(RuntimeError, match="not open"):
        reader.partition("stocks")


def test_the_reader_reads_what_the_writer_appended_across_segments(folder: Path) -> None:
    with DurableLog(folder, segment_bytes=200) as log, LogReader(folder) as reader:
        assert not reader.closed
        assert reader.log_id == log.log_id
        assert reader.partition("stocks") == log.partition("stocks")
        assert reader.dataset_of(log.partition("mutual_funds")) == "mutual_funds"
        assert reader.dataset_of("api-0123456789ab/stocks") is None
        assert reader.durable_end("stocks") == 0 and reader.read("stocks", 0, 10) == []
        expected: dict[str, list[bytes]] = {"stocks": [], "mutual_funds": []}
        got: dict[str, list[tuple[int, bytes]]] = {"stocks": [], "mutual_funds": []}
        for n in range(40):
            dataset = ("stocks", "mutual_funds")[n % 2]
            values = [b"%s-%d-%d" % (dataset.encode(), n, k) for k in range(1 + n % 4)]
            log.submit(dataset, values).result(timeout=10)
            expected[dataset] += values
            if n % 7 == 0:  # read while it is written, from wherever the reader stands
                at = len(got[dataset])
                got[dataset] += reader.read(dataset, at, 3)
        for dataset, values in expected.items():
            assert reader.durable_end(dataset) == log.durable_end(dataset) == len(values)
            got[dataset] += reader.read(dataset, len(got[dataset]), 1_000)
            assert got[dataset] == list(enumerate(values))
            assert reader.read(dataset, 0, 1_000) == log.read(dataset, 0, 1_000)
            assert reader.read(dataset, 5, 2) == [(5, values[5]), (6, values[6])]
            assert reader.first_position(dataset) == 0
        assert len(list((folder / "stocks").glob("*.log"))) > 3, "the segments rolled over"
    assert reader.closed and reader.read("stocks", 0, 10) == []


def test_the_reader_never_reads_past_the_published_end(folder: Path) -> None:
    with DurableLog(folder) as log, LogReader(folder) as reader:
        log.submit("stocks", [b"a", b"b"]).result(timeout=10)
        log.submit("stocks", [b"c", b"d"]).result(timeout=10)
        assert reader.read("stocks", 0, 10) == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]
    with DurableLog(folder) as log, LogReader(folder) as reader:
        log.submit("stocks", [b"e", b"f"]).result(timeout=10)  # frames at 4 and 6 on disk
        log.submit("stocks", [b"g"]).result(timeout=10)
        _publish(folder, 4, 0)  # the writer's hint lags behind: 4 is all a reader knows of
        assert reader.durable_end("stocks") == 4
        assert reader.read("stocks", 0, 10) == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]
        assert reader.read("stocks", 4, 10) == []
        assert not reader.wait_durable({"stocks": 4}, 0.05)
        _publish(folder, 5, 0)  # even an end inside a frame is a bound
        assert reader.read("stocks", 3, 10) == [(3, b"d"), (4, b"e")]
        _publish(folder, 7, 0)
        assert reader.wait_durable({"stocks": 5}, 0.05)
        assert reader.read("stocks", 5, 10) == [(5, b"f"), (6, b"g")]


def test_missing_or_short_ends_are_unknown(folder: Path) -> None:
    with DurableLog(folder) as log:
        log.submit("stocks", [b"s"] * 3).result(timeout=10)
        log.submit("mutual_funds", [b"m"] * 2).result(timeout=10)
    (folder / "durable-ends").unlink()
    with LogReader(folder) as reader:
        assert reader.durable_end("stocks") == 0
        assert reader.read("stocks", 0, 10) == []
        assert not reader.wait_durable(None, 0.02)
        _publish(folder, 3)  # one dataset's end only: the other is unknown
        assert reader.durable_end("stocks") == 3 and reader.durable_end("mutual_funds") == 0
        assert [p for p, _ in reader.read("stocks", 0, 10)] == [0, 1, 2]
        assert reader.read("mutual_funds", 0, 10) == []
        _publish(folder, 3, 9)  # ahead of the segments: only what they hold is read
        assert reader.read("mutual_funds", 0, 10) == [(0, b"m"), (1, b"m")]
        with pytest.raises(ValueError, match="no dataset 'bonds'"):
            reader.durable_end("bonds")


def test_waits_wake_on_an_append_and_give_up_at_the_timeout(folder: Path) -> None:
    with DurableLog(folder) as log, LogReader(folder, poll_seconds=0.005) as reader:
        started = time.monotonic()
        assert not reader.wait_durable(None, 0.2)
        waited = time.monotonic() - started
        assert 0.19 <= waited < 0.5, waited

        acknowledged: list[float] = []

        def append() -> None:
            log.submit("mutual_funds", [b"now"]).result(timeout=10)
            acknowledged.append(time.monotonic())

        threading.Timer(0.2, append).start()
        assert reader.wait_durable({"stocks": 0, "mutual_funds": 0}, 10.0)
        woke = time.monotonic()
        deadline = woke + 5
        while not acknowledged and time.monotonic() < deadline:
            time.sleep(0.001)
        assert acknowledged, "the append never completed"
        # published before the acknowledgement: the reader may even wake first
        assert woke - acknowledged[0] < 0.1
        assert reader.read("mutual_funds", 0, 10) == [(0, b"now")]
        # what was read is not waited for again; a dataset it does not know is ignored
        assert not reader.wait_durable({"mutual_funds": 1, "bonds": 0}, 0.05)


def test_closing_the_reader_ends_a_wait(folder: Path) -> None:
    with DurableLog(folder):
        reader = LogReader(folder).open()
        threading.Timer(0.1, reader.close).start()
        started = time.monotonic()
        assert not reader.wait_durable(None, 10.0)
        assert time.monotonic() - started < 1.0
        assert reader.closed


def test_segments_trimmed_by_the_writer_are_tolerated(folder: Path) -> None:
    now = [1_000_000.0]
    with (
        DurableLog(folder, segment_bytes=64, idempotency_seconds=10, clock=lambda: now[0]) as log,
        LogReader(folder) as reader,
    ):
        for n in range(4):
            log.submit("stocks", [b"%d" % (2 * n), b"%d" % (2 * n + 1)]).result(timeout=10)
        assert reader.read("stocks", 0, 3) == [(0, b"0"), (1, b"1"), (2, b"2")]  # file open
        # the reader deletes nothing: it keeps the positions for the writer's process
        assert reader.trim({"stocks": 6, "bonds": 1}) == 0
        assert reader.trim({"stocks": 4}) == 0
        assert reader.committed == {"stocks": 6}
        assert len(list((folder / "stocks").glob("*.log"))) == 4
        now[0] += 11
        assert log.trim(reader.committed) == 3
        log.submit("stocks", [b"8"]).result(timeout=10)  # in a new segment
        # segments it knew of are gone: it reads on from what is left, and finds the new one
        assert reader.read("stocks", 6, 10) == [(6, b"6"), (7, b"7"), (8, b"8")]
        with pytest.raises(TerminalError, match=r"before position 6 are no longer in the log"):
            reader.read("stocks", 3, 10)
        assert reader.first_position("stocks") == 6
    with LogReader(folder) as fresh:
        assert fresh.first_position("stocks") == 6
        assert fresh.read("stocks", 6, 10) == [(6, b"6"), (7, b"7"), (8, b"8")]
        with pytest.raises(TerminalError, match=r"before position 6 are no longer in the log"):
            fresh.read("stocks", 2, 10)


WRITER = """
import sys, time
from pathlib import Path
from digital_finance.service.durable_log import DurableLog

folder, total = Path(sys.argv[1]), int(sys.argv[2])
with DurableLog(folder, segment_bytes=4096) as log:
    print("open", flush=True)
    sys.stdin.readline()  # the reader is open
    written = {"stocks": 0, "mutual_funds": 0}
    n = 0
    while min(written.values()) < total:
        dataset = ("stocks", "mutual_funds")[n % 2]
        count = min(1 + n % 5, total - written[dataset])
        if count:
            values = [b"%s %d" % (dataset.encode(), written[dataset] + k) for k in range(count)]
            log.submit(dataset, values).result()
            written[dataset] += count
        n += 1
        if n % 50 == 0:
            time.sleep(0.002)  # now and then the reader catches up and waits
print("done", flush=True)
"""


def test_a_reader_in_another_process_gets_every_record_once_in_order(folder: Path) -> None:
    total = 1_500
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), str(total)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=REPO,
    )  # fmt: skip
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline() == "open\n", writer.stderr and writer.stderr.read()
        with LogReader(folder) as reader:
            writer.stdin.write("go\n")
            writer.stdin.flush()
            feed = LogFeed(reader, trim_every_seconds=0.0)
            feed.start(dict)
            got: dict[str, list[tuple[int, bytes]]] = {"stocks": [], "mutual_funds": []}
            deadline = time.monotonic() + 60
            while min(map(len, got.values())) < total:
                assert time.monotonic() < deadline, {d: len(v) for d, v in got.items()}
                batch = feed.poll(0.5, 97).to_pylist()
                for message in batch:
                    assert message["partition"] == reader.partition(message["dataset"])
                    got[message["dataset"]].append((message["position"], message["value"]))
                if batch:
                    feed.done({batch[-1]["partition"]: batch[-1]["position"] + 1})
            assert feed.poll(0.05, 10).num_rows == 0  # nothing more than was written
            assert feed.caught_up()
            for dataset, records in got.items():
                assert records == [(n, b"%s %d" % (dataset.encode(), n)) for n in range(total)]
            # the writer's segments rolled over under the reader; nothing was deleted here
            assert len(list((folder / "stocks").glob("*.log"))) > 3
            assert reader.first_position("stocks") == 0
            # what the tables reached is kept for the writer's process to trim with
            feed.done({reader.partition(d): total for d in got})
            assert reader.committed == {"stocks": total, "mutual_funds": total}
        assert writer.wait(timeout=30) == 0, writer.stderr and writer.stderr.read()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=10)


def test_a_close_from_another_thread_never_meets_a_read_of_the_ends(folder: Path) -> None:
    """`close` beside a thread reading the durable ends: the read sees the reader closed,
    never a closed descriptor (CI once saw `wait_durable` fail with EBADF)."""
    errors: list[BaseException] = []
    with DurableLog(folder) as log:
        log.submit("stocks", [b"1"]).result(timeout=10)
        for _ in range(200):
            reader = LogReader(folder).open()
            started = threading.Event()

            def read_ends(reader: LogReader = reader, started: threading.Event = started) -> None:
                try:
                    while not reader.closed:
                        started.set()
                        reader.durable_end("stocks")
                except BaseException as exc:
                    errors.append(exc)
                started.set()

            thread = threading.Thread(target=read_ends)
            thread.start()
            started.wait(5)
            reader.close()
            thread.join(5)
    assert errors == []
