"""The `_system` history read incrementally equals the history read whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable, write_deltalake

from digital_finance.api import Lakehouse
from digital_finance.engines.embedded import system_tables
from digital_finance.engines.embedded.system_history import SystemHistory
from digital_finance.lakehouse.storage import Location
from digital_finance.runs.plan import reached_positions
from digital_finance.sources.stream_records import records_table


def _write(folder: Path, name: str, lines: list[str]) -> str:
    path = folder / name
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def _record(i: int) -> str:
    return (f'{{"stock_id": {i}, "company_id": 7, "symbol": "S{i}", "price": "1.50", "volume": 3, '
            f'"exchange": "NYSE", "currency": "USD", "timestamp": "2024-03-15T14:30:00Z"}}')  # fmt: skip


def test_incremental_reads_equal_whole_reads_through_appends_and_a_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digital_finance.engines.embedded import system_history

    read_files: list[int] = []
    real = system_history._read

    def counted(paths: list[str]) -> object:
        read_files.append(len(paths))
        return real(paths)

    monkeypatch.setattr(system_history, "_read", counted)
    root = Location.parse(tmp_path / "lake")
    lake = Lakehouse(root)
    incremental = SystemHistory(root)
    assert incremental.read().planned == []
    for n in range(4):
        lake.ingest_files(
            stocks=[_write(tmp_path, f"s{n}.jsonl", [_record(n * 10 + i) for i in range(3)])]
        )
        got, whole = incremental.read(), system_tables.history(root)
        assert sorted(got.planned, key=repr) == sorted(whole.planned, key=repr)
        assert (got.succeeded, got.abandoned, got.forgotten) == (
            whole.succeeded,
            whole.abandoned,
            whole.forgotten,
        )
    # after the first read, each refresh reads one new file per table the batch appended to
    assert read_files and set(read_files) == {1}, read_files
    # a compaction rewrites files and changes no row: passed over, not read again
    read_files.clear()
    DeltaTable(str(tmp_path / "lake" / "_system" / "batches")).optimize.compact()
    lake.ingest_files(stocks=[_write(tmp_path, "s9.jsonl", [_record(99)])])
    got, whole = incremental.read(), system_tables.history(root)
    assert read_files and set(read_files) == {1}, read_files
    assert sorted(got.planned, key=repr) == sorted(whole.planned, key=repr)
    assert got.succeeded == whole.succeeded == {1, 2, 3, 4, 5}
    # a commit that replaces rows: the history is read whole again, and still equal
    batches = DeltaTable(str(tmp_path / "lake" / "_system" / "batches"))
    write_deltalake(batches, batches.to_pyarrow_table(), mode="overwrite")
    got, whole = incremental.read(), system_tables.history(root)
    assert sorted(got.planned, key=repr) == sorted(whole.planned, key=repr)
    assert got.succeeded == whole.succeeded


def _stock(n: int) -> bytes:
    return (
        f'{{"stock_id": {n % 7 + 1}, "company_id": 7, "symbol": "S{n}", "price": "1.50", '
        f'"volume": 3, "exchange": "NYSE", "currency": "USD", "timestamp": {1_700_000_000_000 + n}}}'
    ).encode()


def test_a_streams_succeeded_batches_fold_to_one_part_per_partition(tmp_path: Path) -> None:
    root = Location.parse(tmp_path / "lake")
    lake = Lakehouse(root)
    incremental = SystemHistory(root)
    for b in range(40):
        partitions = [f"t/{p}" for p in range(3) if (b + p) % 4]  # not every partition each time
        held = [
            ("stocks", part, b * 10 + i, _stock(b * 10 + i))
            for part in partitions
            for i in range(2)
        ]
        lake.ingest_stream("kafka", records_table(held))
        got, whole = incremental.read(), system_tables.history(root)
        assert reached_positions(got.planned, got.abandoned) == reached_positions(
            whole.planned, whole.abandoned
        )
        assert max(b for b, _ in got.planned) == max(b for b, _ in whole.planned) == b + 1
        assert {b for b, _ in got.planned} - got.succeeded == set()
        # one part per partition, and the last batch's: not one per batch
        assert len(got.planned) <= 3 + 3, got.planned
    assert len(whole.planned) > 80
    # an unfinished batch keeps all its parts until it succeeds
    claimed = [(b, pf) for b, pf in whole.planned if b == 40]
    assert all((b, pf) in got.planned for b, pf in claimed)


def test_the_last_batch_is_kept_when_no_part_of_it_is_a_partitions_furthest() -> None:
    from digital_finance.runs.plan import PlannedFile
    from digital_finance.sources.discovery import InputFile

    history = SystemHistory(Location.parse("/nonexistent-lake"))

    def part(partition: str, end: int) -> PlannedFile:
        return PlannedFile("stocks", 0, InputFile(partition, end, 0), start=end - 1, source="kafka")

    history.unsettled = {1: [part("t/0", 10)], 2: [part("t/0", 5)]}
    history.succeeded = {1, 2}
    for batch_id in (1, 2):
        for p in history.unsettled.pop(batch_id):
            history._fold(batch_id, p)
    assert history.furthest == {("kafka", "t/0"): (1, part("t/0", 10))}
    assert history.last == [(2, part("t/0", 5))]
