"""A stream's table maintenance in its child process, on a real lakehouse.

The passes compact and checkpoint what the stream's batches wrote and change no row; while
they run, the batches commit without checkpoints of their own; the child leaves when the
stream closes it and when the stream's process dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from deltalake import DeltaTable

from digital_finance import Lakehouse
from digital_finance.lakehouse.maintenance import MaintenanceReport
from digital_finance.sources.stream_records import records_table
from digital_finance.streaming.upkeep import Upkeep
from tests.conftest import REPO


def _stock(n: int) -> bytes:
    return (
        f'{{"stock_id": {n % 40 + 1}, "company_id": 1, "symbol": "S{n}", "price": "1{n}.25", '
        f'"volume": {n}, "exchange": "NYSE", "currency": "USD", "timestamp": {1_700_000_000_000 + n}}}'
    ).encode()


def _batches(lake: Lakehouse, first: int, count: int) -> None:
    for b in range(first, first + count):
        rows = [("stocks", "t/0", b * 10 + i, _stock(b * 10 + i)) for i in range(10)]
        lake.ingest_stream("kafka", records_table(rows))


def _files(lake: Path, table: str) -> int:
    return len(DeltaTable(str(lake / table)).file_uris())


def _columns(lake: Path, table: str) -> list[str]:
    return list(DeltaTable(str(lake / table)).schema().to_arrow().names)


def _rows(lake: Path, table: str, columns: list[str]) -> list[tuple[object, ...]]:
    t = DeltaTable(str(lake / table)).to_pyarrow_table(columns=columns)
    return sorted(tuple(r.values()) for r in t.to_pylist())


def test_the_child_compacts_beside_the_batches_and_leaves_when_closed(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    lake = Lakehouse(root)
    _batches(lake, 0, 20)
    assert _files(root, "bronze/stocks") == 20
    reports: list[MaintenanceReport] = []
    done = threading.Event()

    def seen(report: MaintenanceReport) -> None:
        reports.append(report)
        done.set()

    upkeep = Upkeep(lake, 0.5, seen)
    upkeep.start()
    pid = None
    try:
        assert lake.checkpoints_by_upkeep
        assert done.wait(120), "no maintenance pass came back from the child"
        pid = upkeep.worker_pid
        _batches(lake, 20, 3)  # batches go on beside the child
    finally:
        upkeep.close()
    assert not lake.checkpoints_by_upkeep
    assert pid is not None and pid != os.getpid()
    assert not _alive(pid)
    compacted = {t.table for r in reports for t in r.tables if t.compacted}
    assert "bronze/stocks" in compacted
    assert _files(root, "bronze/stocks") <= 4  # one compacted file and the later batches'
    assert (root / "bronze/stocks/_delta_log/_last_checkpoint").exists()
    # the same batches, never maintained: the same rows, lineage and batch ids included
    plain = tmp_path / "plain"
    _batches(Lakehouse(plain), 0, 23)
    same = {
        "bronze/stocks": ["record", "source_file", "line_number", "_batch_id"],
        "silver/stocks": [c for c in _columns(root, "silver/stocks") if c != "_ingested_at"],
    }
    for table, columns in same.items():
        assert _rows(root, table, columns) == _rows(plain, table, columns), table
    assert len(_rows(root, "bronze/stocks", ["record"])) == 230


def test_the_child_leaves_when_the_stream_dies(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    _batches(Lakehouse(root), 0, 20)
    script = (
        "import sys, time, threading\n"
        "from digital_finance import Lakehouse\n"
        "from digital_finance.streaming.upkeep import Upkeep\n"
        "done = threading.Event()\n"
        "u = Upkeep(Lakehouse(sys.argv[1]), 0.2, lambda r: done.set())\n"
        "u.start()\n"
        "done.wait(120)\n"
        "print(u.worker_pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    stream = subprocess.Popen(
        [sys.executable, "-c", script, str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert stream.stdout is not None
        child = int(stream.stdout.readline())
        assert _alive(child)
        stream.send_signal(signal.SIGKILL)  # no clean-up of any kind
        stream.wait(30)
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(child), "the maintenance process outlived its stream"
    finally:
        stream.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _fund(n: int) -> bytes:
    return (
        f'{{"fund_id": {n % 5 + 1}, "fund_name": "F{n}", "nav": "10.5", "holdings": '
        f'[{{"stock_id": {n % 40 + 1}, "weight": "0.5"}}], "timestamp": {1_700_000_000_000 + n}}}'
    ).encode()


def test_a_batch_with_no_part_of_a_dataset_leaves_its_tables_alone(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    lake = Lakehouse(root)
    lake.ingest_stream("kafka", records_table([("mutual_funds", "f/0", 0, _fund(0))]))
    quiet = ("bronze/mutual_funds", "quarantine/mutual_funds", "silver/mutual_funds")
    versions = {t: DeltaTable(str(root / t)).version() for t in quiet}
    stocks_before = DeltaTable(str(root / "bronze/stocks")).version()
    _batches(lake, 0, 3)  # stocks only
    assert {t: DeltaTable(str(root / t)).version() for t in quiet} == versions
    assert DeltaTable(str(root / "bronze/stocks")).version() == stocks_before + 3
    # the batches are whole all the same: nothing is finished again, nothing doubled
    again = lake.ingest_stream(
        "kafka", records_table([("stocks", "t/0", i, _stock(i)) for i in range(30)])
    )
    assert again.batches == []
    assert len(_rows(root, "bronze/stocks", ["record"])) == 30
    assert len(_rows(root, "bronze/mutual_funds", ["record"])) == 1


def test_a_plan_stands_under_the_lock_only_when_no_writer_committed_since_its_read(
    tmp_path: Path,
) -> None:
    from digital_finance.engines.embedded.system_history import SystemHistory
    from digital_finance.lakehouse.storage import location

    root = tmp_path / "lake"
    _batches(Lakehouse(root), 0, 2)
    history = SystemHistory(location(str(root)))
    history.read()
    mark = history.mark()
    assert mark is not None
    assert not history.moved(mark)  # nobody wrote: the plan made from this read stands
    _batches(Lakehouse(root), 2, 1)  # another writer commits a batch after the read
    assert history.mark() == mark  # the mark is where the read stood, not where we are now
    assert history.moved(mark)
    history.read()
    assert history.mark() != mark and not history.moved(history.mark())  # type: ignore[arg-type]
