"""The `_system` history read incrementally equals the history read whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable

from digital_finance.api import Lakehouse
from digital_finance.engines.embedded import system_tables
from digital_finance.engines.embedded.system_history import SystemHistory
from digital_finance.lakehouse.storage import Location


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
    # a compaction removes files: the history is read whole again, and still equal
    DeltaTable(str(tmp_path / "lake" / "_system" / "batches")).optimize.compact()
    lake.ingest_files(stocks=[_write(tmp_path, "s9.jsonl", [_record(99)])])
    got, whole = incremental.read(), system_tables.history(root)
    assert sorted(got.planned, key=repr) == sorted(whole.planned, key=repr)
    assert got.succeeded == whole.succeeded == {1, 2, 3, 4, 5}
