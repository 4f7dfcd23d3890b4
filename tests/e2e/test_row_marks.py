"""Silver's merge-on-read (`silver_write = "mark"`): the rows a batch replaces are marked in
deletion vectors, on real Delta tables, and every reader sees what a rewrite gives."""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from digital_finance import Lakehouse
from digital_finance.config import RunConfig
from digital_finance.engines.embedded import deletion_vectors, log_commit
from digital_finance.lakehouse.layout import commit_info
from digital_finance.lakehouse.maintenance import MaintenancePolicy
from digital_finance.sources.stream_records import records_table
from tests.conftest import read_delta, rows


def _stock(n: int, keys: int) -> bytes:
    return (
        f'{{"stock_id": {n * 7 % keys + 1}, "company_id": {n % 5 + 1}, "symbol": "S{n}", '
        f'"price": "1{n}.25", "volume": {n}, "exchange": "NYSE", "currency": "USD", '
        f'"timestamp": {1_700_000_000_000 + n}}}'
    ).encode()


def _holding(n: int) -> bytes:
    return (
        f'{{"fund_id": "F{n % 3}", "fund_name": "Fund {n % 3}", "company_id": {n % 6 + 1}, '
        f'"holding_weight": "0.{n % 9 + 1}", "nav": "10{n}.5", '
        f'"as_of": "2026-01-0{n % 9 + 1}T10:00:00Z"}}'
    ).encode()


def _batch(b: int, size: int = 40, keys: int = 90) -> Any:
    first = b * size
    return records_table(
        [("stocks", "t/0", n, _stock(n, keys)) for n in range(first, first + size)]
        + [("mutual_funds", "t/1", n, _holding(n)) for n in range(first, first + 5)]
    )


def _lakes(tmp_path: Path, batches: int) -> tuple[Lakehouse, Lakehouse]:
    marked = Lakehouse(tmp_path / "marked", dataclasses.replace(RunConfig(), silver_write="mark"))
    plain = Lakehouse(tmp_path / "plain", dataclasses.replace(RunConfig(), silver_write="rewrite"))
    for b in range(batches):
        for lake in (marked, plain):
            report = lake.ingest_stream("kafka", _batch(b))
            assert report.ok, report
    return marked, plain


TABLES = ("silver/stocks", "silver/mutual_funds", "gold/stock_fund_holdings")


def _same(tmp_path: Path) -> None:
    for table in TABLES:
        assert rows(tmp_path / "marked", table) == rows(tmp_path / "plain", table), table


def test_marked_batches_equal_rewritten_ones_for_every_reader(tmp_path: Path) -> None:
    marked, plain = _lakes(tmp_path, 6)
    silver = DeltaTable(str(tmp_path / "marked/silver/stocks"))
    assert deletion_vectors.has_vectors(silver)
    assert list((tmp_path / "marked/silver/stocks").glob("deletion_vector_*.bin"))
    assert not deletion_vectors.has_vectors(DeltaTable(str(tmp_path / "plain/silver/stocks")))
    _same(tmp_path)  # read by delta-rs's own engine, not by the code under test
    # the library's read, its SQL and the table's row count agree with delta-rs's reading
    expected = read_delta(tmp_path / "marked/silver/stocks").num_rows
    assert marked.read("silver.stocks").num_rows == expected
    (count,) = marked.query("SELECT count(*) AS n FROM silver.stocks").column("n").to_pylist()
    assert count == expected == plain.read("silver.stocks").num_rows
    ids = marked.read("silver.stocks", columns=["stock_id"]).column("stock_id").to_pylist()
    assert len(ids) == len(set(ids))


def test_marks_continue_after_a_checkpoint_and_compaction_purges_them(tmp_path: Path) -> None:
    marked, plain = _lakes(tmp_path, 4)
    table = tmp_path / "marked/silver/stocks"
    DeltaTable(str(table)).create_checkpoint()
    deletion_vectors._replayed.clear()  # a new process: the vectors come from the checkpoint
    for b in range(4, 7):
        for lake in (marked, plain):
            assert lake.ingest_stream("kafka", _batch(b)).ok
    _same(tmp_path)
    before = read_delta(table).num_rows
    marked.maintain(MaintenancePolicy(min_small_files=2))
    after = DeltaTable(str(table))
    assert deletion_vectors.deleted_rows(after).num_rows == 0
    assert read_delta(table).num_rows == before
    for lake in (marked, plain):
        assert lake.ingest_stream("kafka", _batch(7)).ok
    _same(tmp_path)


def test_a_large_batch_rebuilds_a_marked_silver(tmp_path: Path) -> None:
    _, plain = _lakes(tmp_path, 3)
    auto = Lakehouse(tmp_path / "marked")  # `auto`: a table with vectors is marked or rebuilt
    big = _batch(3, size=400, keys=300)
    assert auto.ingest_stream("kafka", big).ok
    assert plain.ingest_stream("kafka", big).ok
    _same(tmp_path)


def test_a_commit_never_overwrites_another_writers_version(tmp_path: Path) -> None:
    _lakes(tmp_path, 2)
    table = tmp_path / "marked/silver/stocks"
    dt = DeltaTable(str(table))
    taken = table / "_delta_log" / f"{dt.version() + 1:020d}.json"
    taken.write_text(json.dumps({"commitInfo": {"operation": "ELSEWHERE"}}) + "\n")
    with pytest.raises(log_commit.CommitConflict):
        log_commit.commit(table, dt, [], 99, "MERGE")
    assert "ELSEWHERE" in taken.read_text()
    assert not [p for p in (table / "_delta_log").iterdir() if p.name.endswith(".tmp")]


def test_a_spark_style_commit_is_replayed_whatever_its_order(tmp_path: Path) -> None:
    """Spark writes a file's new vector (`add`) before the old one's `remove`."""
    _lakes(tmp_path, 3)
    table = tmp_path / "marked/silver/stocks"
    dt = DeltaTable(str(table))
    vectors = deletion_vectors.current_vectors(table, dt.version())
    path, vector = next(iter(vectors.items()))
    adds = dt.get_add_actions(flatten=True)
    sizes = dict(
        zip(adds.column("path").to_pylist(), adds.column("size_bytes").to_pylist(), strict=True)
    )
    size = sizes[path]
    copy = tmp_path / "copy"
    shutil.copytree(table, copy)
    again = DeltaTable(str(copy))
    stats = json.dumps({"numRecords": 1000, "tightBounds": False})
    add = log_commit.add_action(path, size, 0, stats, vector)
    remove = log_commit.remove_action(path, size, vector)
    log_commit.commit(copy, again, [add, remove], 98, "DELETE")
    deletion_vectors._replayed.clear()
    assert path in deletion_vectors.current_vectors(copy, again.version())


def _stocks_only(b: int) -> Any:
    return records_table([("stocks", "t/2", b, _stock(10_000 + b * 13, 90))])


def _holdings_only(b: int) -> Any:
    return records_table([("mutual_funds", "t/3", b, _holding(20_000 + b))])


def _stock_of(b: int, company: int) -> Any:
    """Stock 500 at `company`: company 6 has holdings and, but for this stock, no stock."""
    record = (
        f'{{"stock_id": 500, "company_id": {company}, "symbol": "M", "price": "7.{b}", '
        f'"volume": {b}, "exchange": "NYSE", "currency": "USD", '
        f'"timestamp": {1_800_000_000_000 + b}}}'
    )
    return records_table([("stocks", "t/4", b, record.encode())])


def _holding_of(b: int, company: int) -> Any:
    record = (
        f'{{"fund_id": "G{b}", "fund_name": "New {b}", "company_id": {company}, '
        f'"holding_weight": "0.5", "nav": "11.5", "as_of": "2026-02-0{b % 9 + 1}T10:00:00Z"}}'
    )
    return records_table([("mutual_funds", "t/5", b, record.encode())])


def test_gold_increments_equal_the_whole_join(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the touched companies' gold rows are replaced (stocks that move company, new
    holdings, batches of one dataset, a compaction between, a company whose holdings gain
    their first stock and lose it again, a company with a stock that gains its first
    holding) and gold stays the join."""
    from digital_finance.engines.embedded import gold

    from_gold: list[bool] = []
    taken = gold._stocks_from_gold

    def recorded(*args: Any) -> str | None:
        found = taken(*args)
        from_gold.append(found is not None)
        return found

    monkeypatch.setattr(gold, "_stocks_from_gold", recorded)
    increments = dataclasses.replace(RunConfig(), silver_write="mark", gold_write="increment")
    marked = Lakehouse(tmp_path / "marked", increments)
    plain = Lakehouse(tmp_path / "plain", dataclasses.replace(RunConfig(), silver_write="rewrite"))
    batches = [_batch(b) for b in range(5)] + [_stocks_only(5), _holdings_only(6), _batch(7)]
    batches += [_stock_of(8, 6), _holdings_only(9), _stock_of(10, 2), _batch(11)]
    batches += [_stock_of(12, 7), _holding_of(13, 7), _holding_of(14, 7), _batch(15)]
    orphaned = 0
    counts = []
    for b, batch in enumerate(batches):
        if b == 6:
            marked.maintain(MaintenancePolicy(min_small_files=2))  # silver moves: gold whole
        ours = marked.ingest_stream("kafka", batch)
        whole = plain.ingest_stream("kafka", batch)
        assert ours.ok and whole.ok and len(ours.batches) == len(whole.batches) == 1
        _same(tmp_path)
        # holdings of company 6 have no stock: counted beside gold as from silver
        warned = [r.batches[0].integrity_warnings for r in (ours, whole)]
        assert warned[0] == warned[1], (b, warned)
        orphaned += warned[0]
        counts.append(warned[0])
    table = tmp_path / "marked/gold/stock_fund_holdings"
    assert deletion_vectors.has_vectors(DeltaTable(str(table)))
    operations = [
        commit_info(table, v).get("operation") for v in range(DeltaTable(str(table)).version() + 1)
    ]
    assert operations.count("MERGE") >= 4  # increments, between whole writes
    assert orphaned > 0
    assert counts[8] == 0 < counts[7] and counts[10] > 0  # company 6 gained, then lost a stock
    # gold's own rows gave the stocks, but for company 7's first holding (its stock unseen)
    assert True in from_gold and False in from_gold, from_gold
    assert not deletion_vectors.has_vectors(
        DeltaTable(str(tmp_path / "plain/gold/stock_fund_holdings"))
    )


def test_the_orphan_sweep_keeps_named_vectors_and_removes_a_killed_writers(
    tmp_path: Path,
) -> None:
    from digital_finance.lakehouse import orphans

    _lakes(tmp_path, 4)
    table = tmp_path / "marked/silver/stocks"
    DeltaTable(str(table)).create_checkpoint()  # names come from the checkpoint too
    named = sorted(p.name for p in table.glob("deletion_vector_*.bin"))
    assert named
    stray = table / deletion_vectors.file_name(uuid.uuid4())
    stray.write_bytes(b"\x01")  # a vector file whose commit never came
    before = read_delta(table).num_rows
    assert orphans.sweep_table(table).files == 1
    assert not stray.exists()
    assert sorted(p.name for p in table.glob("deletion_vector_*.bin")) == named
    assert read_delta(table).num_rows == before


def test_a_lakehouse_reached_through_a_symbolic_link_is_marked_and_read(tmp_path: Path) -> None:
    """delta-rs names a table's files by the folder's real path; marks and rewrites match
    files by name, so a lakehouse given by a linked path once failed its second batch."""
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    linked = Lakehouse(
        tmp_path / "linked" / "marked", dataclasses.replace(RunConfig(), silver_write="mark")
    )
    plain = Lakehouse(tmp_path / "plain", dataclasses.replace(RunConfig(), silver_write="rewrite"))
    for b in range(3):
        for lake in (linked, plain):
            assert lake.ingest_stream("kafka", _batch(b)).ok
    assert deletion_vectors.has_vectors(DeltaTable(str(tmp_path / "real/marked/silver/stocks")))
    for table in TABLES:
        assert rows(tmp_path / "real/marked", table) == rows(tmp_path / "plain", table), table


def test_deleted_rows_decoded_from_the_vectors_equal_delta_rs_expanding_them(
    tmp_path: Path,
) -> None:
    _lakes(tmp_path, 5)
    for table in TABLES:
        dt = DeltaTable(str(tmp_path / "marked" / table))
        if not deletion_vectors.has_vectors(dt):
            continue
        decoded = deletion_vectors._decoded(dt)
        assert decoded is not None and decoded.num_rows > 0, table
        expanded = deletion_vectors._expanded(dt)
        assert sorted(decoded.to_pylist(), key=repr) == sorted(expanded.to_pylist(), key=repr)
        assert set(decoded.column("filename").to_pylist()) <= set(
            deletion_vectors.local_path(u) for u in dt.file_uris()
        )
