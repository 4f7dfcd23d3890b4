"""The service's durable log: positions, group commit, recovery, receipts and retention."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from digital_finance.errors import TerminalError, TransientError
from digital_finance.service.durable_log import DurableLog, Receipt
from tests.conftest import REPO


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "log"


@pytest.fixture
def log(folder: Path) -> Iterator[DurableLog]:
    with DurableLog(folder) as opened:
        yield opened


def _segments(folder: Path, dataset: str = "stocks") -> list[Path]:
    return sorted((folder / dataset).glob("*.log"))


def _receipt(key: str, at: float, dataset: str = "stocks") -> Receipt:
    return Receipt("alice", key, "ab" * 32, dataset, '{"accepted":1}', at)


def test_records_come_back_in_order_across_datasets_and_segments(folder: Path) -> None:
    with DurableLog(folder, segment_bytes=300) as log:
        futures = [
            log.submit(dataset, [b'{"n":%d,"k":%d}' % (n, k) for k in range(1 + n % 3)])
            for n in range(30)
            for dataset in ("stocks", "mutual_funds")
        ]
        appended = [f.result(timeout=10) for f in futures]
        stocks = log.read("stocks", 0, 1_000)
        assert log.durable_end("stocks") == len(stocks) == log.durable_end("mutual_funds")
    by_dataset = {d: [a for a in appended if a.dataset == d] for d in ("stocks", "mutual_funds")}
    for runs in by_dataset.values():  # each submission's positions follow the one before
        assert [a.first for a in runs] == [0, *[a.first + a.count for a in runs][:-1]]
    assert len(_segments(folder)) > 3, "the small segments rolled over"
    expected = [b'{"n":%d,"k":%d}' % (n, k) for n in range(30) for k in range(1 + n % 3)]
    assert stocks == list(enumerate(expected))
    with DurableLog(folder, segment_bytes=300) as reopened:
        assert reopened.read("mutual_funds", 0, 1_000) == list(enumerate(expected))
        # writing goes on where it stood, in the segment it stood in or a new one
        more = reopened.submit("stocks", [b"next"]).result(timeout=10)
        assert more.first == len(expected)
        assert reopened.read("stocks", more.first, 5) == [(more.first, b"next")]


def test_a_frame_larger_than_a_segment_gets_its_own(folder: Path) -> None:
    with DurableLog(folder, segment_bytes=100) as log:
        log.submit("stocks", [b"small"]).result(timeout=10)
        big = log.submit("stocks", [b"x" * 500, b"y" * 10]).result(timeout=10)
        log.submit("stocks", [b"after"]).result(timeout=10)
        assert [p.name for p in _segments(folder)] == [f"{n:020d}.log" for n in (0, 1, 3)]
        assert log.read("stocks", big.first, 10) == [(1, b"x" * 500), (2, b"y" * 10), (3, b"after")]


def test_reads_start_anywhere_even_inside_a_frame(log: DurableLog) -> None:
    for frame in range(5):
        values = [b"%d" % (frame * 10 + k) for k in range(10)]
        log.submit("stocks", values).result(timeout=10)
    assert log.read("stocks", 15, 3) == [(15, b"15"), (16, b"16"), (17, b"17")]
    # sequential reads go on from the cursor, including from the middle of a frame
    assert [p for p, _ in log.read("stocks", 18, 5)] == [18, 19, 20, 21, 22]
    assert [p for p, _ in log.read("stocks", 23, 100)] == list(range(23, 50))
    # and a read behind the cursor still finds its records
    assert log.read("stocks", 2, 2) == [(2, b"2"), (3, b"3")]
    assert log.read("stocks", 49, 10) == [(49, b"49")]
    assert log.read("stocks", 50, 10) == []
    assert log.read("stocks", 0, 0) == []


def test_concurrent_submissions_share_fsyncs(folder: Path) -> None:
    syncs = []

    def slow_disk(fd: int) -> None:  # a disk's fsync takes a while: requests pile up meanwhile
        syncs.append(fd)
        time.sleep(0.002)

    threads, each = 8, 25
    results: list[list[tuple[str, int, int]]] = [[] for _ in range(threads)]
    with DurableLog(folder, sync=slow_disk) as log:
        start = threading.Barrier(threads)

        def submit(number: int) -> None:
            dataset = ("stocks", "mutual_funds")[number % 2]
            start.wait()
            futures = [log.submit(dataset, [b"%d-%d" % (number, n)]) for n in range(each)]
            for f in futures:
                a = f.result(timeout=30)
                results[number].append((a.dataset, a.first, a.count))

        workers = [threading.Thread(target=submit, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        stored = {d: log.read(d, 0, 1_000) for d in ("stocks", "mutual_funds")}
    acknowledged = [r for rs in results for r in rs]
    assert len(acknowledged) == threads * each
    for dataset, records in stored.items():
        positions = sorted(first for d, first, _ in acknowledged if d == dataset)
        assert positions == list(range(100)) == [p for p, _ in records]
    # a thread's records keep its submission order
    for number, rs in enumerate(results):
        mine = [v for p, v in stored[rs[0][0]] if v.startswith(b"%d-" % number)]
        assert mine == [b"%d-%d" % (number, n) for n in range(each)]
    assert len(syncs) <= 40, f"{len(syncs)} fsyncs for 200 submissions: no group commit"


def test_a_failed_fsync_fails_the_waiting_and_refuses_more_until_reopened(folder: Path) -> None:
    broken = threading.Event()

    def disk(fd: int) -> None:
        if broken.is_set():
            raise OSError(errno.EIO, "Input/output error")
        os.fdatasync(fd)

    with DurableLog(folder, sync=disk) as log:
        kept = log.submit("stocks", [b"kept"]).result(timeout=10)
        broken.set()
        failed = log.submit("stocks", [b"lost"])
        with pytest.raises(TransientError, match="could not write or fsync") as caught:
            failed.result(timeout=10)
        assert isinstance(caught.value.__cause__, OSError)
        assert log.failure is not None
        with pytest.raises(TransientError, match="refuses records"):
            log.submit("mutual_funds", [b"later"])
        assert log.durable_end("stocks") == kept.first + 1  # nothing more is readable
        assert log.read("stocks", 0, 10) == [(0, b"kept")]
    broken.clear()
    with log:  # reopened, it trusts what the disk holds
        assert log.failure is None
        assert log.read("stocks", 0, 1) == [(0, b"kept")]
        assert log.submit("mutual_funds", [b"again"]).result(timeout=10).first == 0


@pytest.mark.parametrize("tail", ["half a frame", "garbage", "a damaged last frame"])
def test_a_torn_tail_is_cut_off_and_every_record_before_it_kept(folder: Path, tail: str) -> None:
    with DurableLog(folder) as log:
        for n in range(20):
            log.submit("stocks", [b"record %d" % n]).result(timeout=10)
    segment = _segments(folder)[-1]
    whole = segment.read_bytes()
    with DurableLog(folder) as log:  # one more frame, to tear
        log.submit("stocks", [b"never acknowledged"]).result(timeout=10)
    frame = segment.read_bytes()[len(whole) :]
    torn = {
        "half a frame": frame[: len(frame) // 2],
        "garbage": b"\x00\x17garbage bytes",
        "a damaged last frame": frame[:-1] + bytes([frame[-1] ^ 0xFF]),
    }[tail]
    segment.write_bytes(whole + torn)
    with DurableLog(folder) as log:
        assert log.read("stocks", 0, 100) == [(n, b"record %d" % n) for n in range(20)]
        assert segment.read_bytes() == whole
        assert log.submit("stocks", [b"next"]).result(timeout=10).first == 20
    with DurableLog(folder) as log:
        assert log.read("stocks", 19, 5) == [(19, b"record 19"), (20, b"next")]


def test_a_damaged_frame_followed_by_intact_ones_is_corruption(folder: Path) -> None:
    with DurableLog(folder) as log:
        for n in range(5):
            log.submit("stocks", [b"record %d" % n]).result(timeout=10)
    segment = _segments(folder)[-1]
    data = bytearray(segment.read_bytes())
    data[30] ^= 0xFF  # inside the first frame
    segment.write_bytes(bytes(data))
    with pytest.raises(TerminalError, match=r"00000000000000000000\.log.* at byte 0, followed"):
        DurableLog(folder).open()
    assert segment.read_bytes() == bytes(data), "nothing was cut off"
    lock = os.open(folder / "LOCK", os.O_RDWR)  # the failed open let go of the folder
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(lock)


def test_damage_to_acknowledged_records_is_reported_where_it_is(folder: Path) -> None:
    with DurableLog(folder, segment_bytes=80) as log:
        for n in range(4):
            log.submit("stocks", [b"record %d" % n]).result(timeout=10)
        first = _segments(folder)[0]
        data = bytearray(first.read_bytes())
        data[-2] ^= 0xFF  # a bit flipped on disk, in a segment no longer written
        first.write_bytes(bytes(data))
        with pytest.raises(TerminalError, match=r"00000000000000000000\.log: .*CRC.* at byte 0"):
            log.read("stocks", 0, 10)
        assert log.read("stocks", 2, 10) == [(2, b"record 2"), (3, b"record 3")]


def test_one_log_folder_one_writer(folder: Path) -> None:
    with DurableLog(folder) as log:
        log_id = log.log_id
        with pytest.raises(TerminalError, match="another `digital-finance serve` uses the log"):
            DurableLog(folder).open()
        assert log.submit("stocks", [b"still writing"]).result(timeout=10).first == 0
    with DurableLog(folder) as again:  # released on close; the id stays
        assert again.log_id == log_id and len(log_id) == 12
        assert again.partition("stocks") == f"api-{log_id}/stocks"
        assert again.dataset_of(f"api-{log_id}/mutual_funds") == "mutual_funds"
        assert again.dataset_of("api-000000000000/stocks") is None
        assert again.dataset_of(f"api-{log_id}/bonds") is None


def test_receipts_survive_a_restart_and_expire(folder: Path) -> None:
    now = [1_000_000.0]
    with DurableLog(folder, idempotency_seconds=3600, clock=lambda: now[0]) as log:
        log.submit("stocks", [b"a"], _receipt("k1", now[0])).result(timeout=10)
        found = log.receipt("alice", "k1")
        assert found is not None and found.response == '{"accepted":1}'
        assert log.receipt("bob", "k1") is None
        now[0] += 1800
        log.submit("stocks", [b"b"], _receipt("k2", now[0])).result(timeout=10)
        with pytest.raises(ValueError, match="receipt for mutual_funds"):
            log.submit("stocks", [b"c"], _receipt("k3", now[0], "mutual_funds"))
    now[0] += 1000
    with DurableLog(folder, idempotency_seconds=3600, clock=lambda: now[0]) as log:
        assert log.receipt("alice", "k1") == _receipt("k1", 1_000_000.0)
        assert log.receipt("alice", "k2") is not None
        now[0] += 1000  # k1 is 3800 s old now
        assert log.receipt("alice", "k1") is None
        assert log.receipt("alice", "k2") is not None
    with DurableLog(folder, idempotency_seconds=3600, clock=lambda: now[0]) as log:
        assert log.receipt("alice", "k1") is None  # not even indexed
        assert log.receipt("alice", "k2") is not None
        assert log.read("stocks", 0, 5) == [(0, b"a"), (1, b"b")]


def test_trim_keeps_what_the_tables_lack_the_idempotency_window_and_the_current_segment(
    folder: Path,
) -> None:
    now = [1_000_000.0]
    with DurableLog(folder, segment_bytes=100, idempotency_seconds=60, clock=lambda: now[0]) as log:
        for n in range(6):  # one frame of 2 records per segment
            log.submit("stocks", [b"%d" % n * 20, b"x"]).result(timeout=10)
        log.submit("mutual_funds", [b"fund"]).result(timeout=10)
        assert [int(p.stem) for p in _segments(folder)] == [0, 2, 4, 6, 8, 10]
        size = log.size_bytes()
        assert log.trim({"stocks": 12, "mutual_funds": 1}) == 0, "all are in the window"
        assert log.backlog({"stocks": 7}) == {"stocks": 5, "mutual_funds": 1}
        now[0] += 61
        # 0..1 and 2..3 are below 5; 4..5 is not whole: it stays, and all after it
        assert log.trim({"stocks": 5}) == 2
        assert [int(p.stem) for p in _segments(folder)] == [4, 6, 8, 10]
        assert log.first_position("stocks") == 4 and log.size_bytes() < size
        assert log.read("stocks", 4, 1) == [(4, b"2" * 20)]
        with pytest.raises(TerminalError, match="no longer in the log"):
            log.read("stocks", 3, 1)
        # everything in the tables: the segment being written stays
        assert log.trim({"stocks": 12, "mutual_funds": 1}) == 3
        assert [int(p.stem) for p in _segments(folder)] == [10]
        assert [int(p.stem) for p in _segments(folder, "mutual_funds")] == [0]
        assert log.submit("stocks", [b"on"]).result(timeout=10).first == 12
    with DurableLog(folder, segment_bytes=100) as reopened:
        assert reopened.first_position("stocks") == 10
        assert [p for p, _ in reopened.read("stocks", 0 + 10, 10)] == [10, 11, 12]


def test_readers_wait_for_durable_records_without_polling(log: DurableLog) -> None:
    assert log.wait_durable({"stocks": 0}, 0.05) is False
    threading.Timer(0.1, lambda: log.submit("stocks", [b"late"])).start()
    started = time.monotonic()
    assert log.wait_durable(None, 5.0) is True
    assert time.monotonic() - started < 2.0
    assert log.read("stocks", 0, 1) == [(0, b"late")]


def _published(folder: Path) -> tuple[int, ...]:
    data = (folder / "durable-ends").read_bytes()
    return struct.unpack(f"<{len(data) // 8}Q", data)


def test_the_durable_ends_are_published_after_each_group_commit(folder: Path) -> None:
    seen: list[tuple[tuple[int, ...], tuple[int, int]]] = []

    def sync(fd: int) -> None:  # the hint as it stands while records are being made durable
        os.fdatasync(fd)
        time.sleep(0.002)  # a disk takes a while: submissions pile up into groups
        ends = (writer.durable_end("stocks"), writer.durable_end("mutual_funds"))
        seen.append((_published(folder), ends))

    pwrites: list[int] = []
    real_pwrite = os.pwrite

    def counting_pwrite(fd: int, data: bytes, offset: int) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("durable-ends"):
            pwrites.append(len(data))
        return real_pwrite(fd, data, offset)

    writer = DurableLog(folder, sync=sync)  # `sync` runs on its writer thread, after this
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "pwrite", counting_pwrite)
        with writer:
            assert _published(folder) == (0, 0)  # at open, after recovery
            futures = [writer.submit("stocks", [b"s%d" % n] * (1 + n % 3)) for n in range(40)]
            futures += [writer.submit("mutual_funds", [b"m"]) for _ in range(5)]
            for f in futures:
                f.result(timeout=10)
            assert _published(folder) == (writer.durable_end("stocks"), 5)
    # never ahead of what is durable: while a group is synced, the hint is the last group's
    for published, durable in seen:
        assert published[0] <= durable[0] and published[1] <= durable[1]
    assert all(size == 16 for size in pwrites)  # one u64 per dataset
    # one pwrite at open, then one per group, which syncs one or two datasets' files
    groups = len(pwrites) - 1
    assert (len(seen) + 1) // 2 <= groups <= len(seen)
    assert groups < 45, "not one pwrite per submission"
    # a restart publishes the recovered ends, even without the file
    (folder / "durable-ends").unlink()
    with DurableLog(folder) as reopened:
        assert _published(folder) == (reopened.durable_end("stocks"), 5)
        assert reopened.durable_end("stocks") == sum(1 + n % 3 for n in range(40))


def test_bad_submissions_are_refused(log: DurableLog) -> None:
    with pytest.raises(ValueError, match="no records"):
        log.submit("stocks", [])
    with pytest.raises(ValueError, match="no dataset 'bonds'"):
        log.submit("bonds", [b"x"])
    log.close()
    with pytest.raises(TransientError, match="closed"):
        log.submit("stocks", [b"x"])


# --- a real crash ------------------------------------------------------------------------
CRASHING_WRITER = r"""
import sys, threading
from pathlib import Path
from digital_finance.service.durable_log import DurableLog

log = DurableLog(Path(sys.argv[1]), segment_bytes=16 * 1024).open()
printing = threading.Lock()

def value(thread, n):
    return b"%d:%d;" % (thread, n) * (1 + n % 9)

def write(thread):
    dataset = ("stocks", "mutual_funds")[thread % 2]
    n = 0
    while True:
        count = 1 + n % 4
        appended = log.submit(dataset, [value(thread, n + k) for k in range(count)]).result()
        with printing:  # acknowledged: durable
            print(dataset, appended.first, appended.count, thread, n, flush=True)
        n += count

for thread in range(4):
    threading.Thread(target=write, args=(thread,), daemon=True).start()
threading.Event().wait()
"""


def _value(thread: int, n: int) -> bytes:
    return b"%d:%d;" % (thread, n) * (1 + n % 9)


def test_every_acknowledged_record_survives_kill_9(folder: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    acknowledged: list[tuple[str, int, int, int, int]] = []
    try:
        assert writer.stdout is not None
        while len(acknowledged) < 300:
            line = writer.stdout.readline()
            assert line, f"the writer ended: {writer.stderr.read() if writer.stderr else ''}"
            dataset, first, count, thread, n = line.split()
            acknowledged.append((dataset, int(first), int(count), int(thread), int(n)))
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=10)
    assert writer.returncode == -signal.SIGKILL
    with DurableLog(folder, segment_bytes=16 * 1024) as log:
        for dataset, first, count, thread, n in acknowledged:
            expected = [(first + k, _value(thread, n + k)) for k in range(count)]
            assert log.read(dataset, first, count) == expected
        for dataset in ("stocks", "mutual_funds"):
            records = log.read(dataset, 0, 1_000_000)
            # contiguous from 0, and only whole records that some thread submitted
            assert [p for p, _ in records] == list(range(log.durable_end(dataset)))
            seen = set()
            for _, value in records:
                thread, n = map(int, value.split(b";", 1)[0].split(b":"))
                assert value == _value(thread, n)
                seen.add((thread, n))
            assert len(seen) == len(records)
        assert len(_segments(folder)) > 1, "the crash test should span segments"


def test_by_default_a_group_is_written_synchronously_in_one_call(folder: Path) -> None:
    with DurableLog(folder) as log:
        log.submit("stocks", [b"one"]).result(timeout=10)
        fd = log._streams["stocks"].fd
        # O_DSYNC: the write returns once the data is on the disk, no fdatasync after it
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DSYNC
    with DurableLog(folder, sync=os.fsync) as log:  # a given sync: plain writes, then it
        assert not fcntl.fcntl(log._streams["stocks"].fd, fcntl.F_GETFL) & os.O_DSYNC
        assert log.read("stocks", 0, 10) == [(0, b"one")]
