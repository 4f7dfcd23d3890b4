"""Silver's files written on the silver thread while bronze and quarantine commit
(`engines/embedded/silver_ahead.py`), on real Delta tables.

The tables are those of silver written at its own step; files written ahead and never
committed are removed (a failed batch) or swept by the next run (a killed one); files made
from a version of silver that moved before the commit are not committed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import duckdb
import pytest
from deltalake import DeltaTable, write_deltalake

from digital_finance import Lakehouse
from digital_finance.config import RunConfig
from digital_finance.definition.rules import LatestWins
from digital_finance.engines.embedded import delta_io, silver_merge
from digital_finance.lakehouse import orphans
from digital_finance.lakehouse.storage import location
from digital_finance.sources.stream_records import records_table
from tests.conftest import cli_process, rows


def _stock(n: int) -> bytes:
    return (
        f'{{"stock_id": {n % 40 + 1}, "company_id": 1, "symbol": "S{n}", "price": "1{n}.25", '
        f'"volume": {n}, "exchange": "NYSE", "currency": "USD", "timestamp": {1_700_000_000_000 + n}}}'
    ).encode()


def _batch(b: int, size: int = 10) -> Any:
    return records_table(
        [("stocks", "t/0", b * size + i, _stock(b * size + i)) for i in range(size)]
    )


def _unreferenced(lake: Path, table: str) -> set[str]:
    folder = lake / table
    files = {
        str(p.relative_to(folder)) for p in folder.rglob("*.parquet") if "_delta_log" not in p.parts
    }
    return files - orphans.referenced(folder)


def test_a_batch_failing_before_silver_removes_the_files_written_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = dataclasses.replace(RunConfig(), silver_write="rebuild")
    lake = Lakehouse(tmp_path / "lake", config)
    lake.ingest_stream("kafka", _batch(0))
    written: list[silver_merge.Written] = []
    write_files = silver_merge.write_files

    def recorded(*args: Any, **kwargs: Any) -> silver_merge.Written | None:
        out = write_files(*args, **kwargs)
        if out is not None:
            written.append(out)
        return out

    append_query = delta_io.append_query

    def broken(root: Any, table: str, *args: Any) -> int | None:
        if table.startswith("quarantine/"):
            raise RuntimeError("quarantine failed")
        return append_query(root, table, *args)

    def nothing_broken(root: Any, table: str, *args: Any) -> int | None:
        raise RuntimeError("quarantine failed")  # a clean batch's quarantine commit

    monkeypatch.setattr(silver_merge, "write_files", recorded)
    with monkeypatch.context() as patched:
        patched.setattr(delta_io, "append_query", broken)
        patched.setattr(delta_io, "append_nothing", nothing_broken)
        with pytest.raises(RuntimeError, match="quarantine failed"):
            lake.ingest_stream("kafka", _batch(1))
    assert written, "the batch's silver files were not written ahead"
    added = [a.path for w in written for a in w.actions if hasattr(a, "size")]
    assert added and not any((tmp_path / "lake" / "silver/stocks" / p).exists() for p in added)
    assert _unreferenced(tmp_path / "lake", "silver/stocks") == set()

    # the batch again, and one more: the tables one clean lakehouse makes of the same batches
    lake.ingest_stream("kafka", _batch(1))
    lake.ingest_stream("kafka", _batch(2))
    clean = Lakehouse(tmp_path / "clean", config)
    for b in range(3):
        clean.ingest_stream("kafka", _batch(b))
    for table in ("bronze/stocks", "quarantine/stocks", "silver/stocks"):
        drop = {"_run_id", "_ingested_at", "_quarantined_at", "_batch_id"}
        assert rows(tmp_path / "lake", table, drop) == rows(tmp_path / "clean", table, drop), table
    assert len(written) >= 3  # the retry and the next batch went through the silver thread too


@pytest.mark.parametrize(
    ("strategy", "ahead"), [("rebuild", True), ("rewrite", False), ("auto", True)]
)
def test_a_new_table_a_rebuild_and_autos_ways_are_written_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy: str, ahead: bool
) -> None:
    """The first batch's files (the table is new) are always written ahead; a rewrite
    asked for by name is written at silver's step, whatever silver's size."""
    from digital_finance.engines.embedded import silver_ahead

    started: list[str] = []
    start = silver_ahead.SilverAhead.start

    def recorded(self: Any, dataset: Any, table: str, *args: Any, write: bool) -> None:
        if write:
            started.append(table)
        start(self, dataset, table, *args, write=write)

    monkeypatch.setattr(silver_ahead.SilverAhead, "start", recorded)
    lake = Lakehouse(tmp_path / "lake", dataclasses.replace(RunConfig(), silver_write=strategy))
    for b in range(3):  # 10 records into 40 keys: `auto` rebuilds
        lake.ingest_stream("kafka", _batch(b))
    assert started == ["silver/stocks"] * (3 if ahead else 1)


def test_files_made_from_a_version_that_moved_are_not_committed(tmp_path: Path) -> None:
    root = location(str(tmp_path))
    con = duckdb.connect()
    first = "SELECT 1::BIGINT AS id, 10::BIGINT AS v, TIMESTAMPTZ '2026-01-01 00:00:00+00' AS t, 1::BIGINT AS _batch_id"
    delta_io.write_query(root, "silver", con, first, 1, "append")
    rule = LatestWins(("id",), "t")
    candidates = "SELECT 1::BIGINT AS id, 20::BIGINT AS v, TIMESTAMPTZ '2026-01-02 00:00:00+00' AS t, 2::BIGINT AS _batch_id"
    batch = silver_merge.Candidates(candidates, 2, rule, 1, "rebuild")
    written = silver_merge.write_files(root, "silver", con, batch)
    assert written is not None
    added = [tmp_path / "silver" / a.path for a in written.actions if hasattr(a, "size")]
    assert added and all(p.exists() for p in added)
    # another commit lands on silver between the files and their commit
    write_deltalake(
        str(tmp_path / "silver"),
        DeltaTable(str(tmp_path / "silver")).to_pyarrow_table(),
        mode="append",
    )
    moved = DeltaTable(str(tmp_path / "silver")).version()
    assert silver_merge.commit_written(root, "silver", written, 2) is None
    assert not any(p.exists() for p in added)
    table = DeltaTable(str(tmp_path / "silver"))
    assert table.version() == moved
    assert sorted(table.to_pyarrow_table(columns=["v"]).column("v").to_pylist()) == [10, 10]
    # written again at silver's step, from the version that stands
    assert silver_merge.merge_latest(root, "silver", con, batch) == 1
    latest = DeltaTable(str(tmp_path / "silver")).to_pyarrow_table(columns=["id", "v"])
    assert latest.to_pylist() == [{"id": 1, "v": 20}]


@pytest.mark.slow
def test_a_writer_killed_before_silver_leaves_files_the_next_run_sweeps(
    generated: Path, tmp_path: Path
) -> None:
    stocks = sorted((generated / "stocks").iterdir())
    half = len(stocks) // 2
    assert half >= 1
    lake, clean = tmp_path / "lake", tmp_path / "clean"

    def run(out: Path, files: list[Path], env: dict[str, str] | None = None) -> Any:
        args = ["run", "--output", str(out)] + [a for f in files for a in ("--stocks", str(f))]
        return cli_process(*args, env=env)

    assert run(lake, stocks[:half]).returncode == 0
    # killed once silver's files are written and before their commit (at `before_silver_stocks`
    # the silver thread may not have written them yet: bronze's commit is quick now)
    crashed = run(lake, stocks, env={"DIGITAL_FINANCE_CRASH_AT": "written_silver_stocks"})
    assert crashed.returncode == 137, crashed.stderr
    assert _unreferenced(lake, "silver/stocks"), "the killed batch wrote no silver file ahead"
    again = run(lake, stocks)
    assert again.returncode == 0, again.stderr
    assert _unreferenced(lake, "silver/stocks") == set()
    assert run(clean, stocks[:half]).returncode == 0
    assert run(clean, stocks).returncode == 0
    for table in ("bronze/stocks", "quarantine/stocks", "silver/stocks"):
        drop = {"_run_id", "_ingested_at", "_quarantined_at"}
        assert rows(lake, table, drop) == rows(clean, table, drop), table
