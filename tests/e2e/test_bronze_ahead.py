"""Bronze written from the kernel's chunks while the batch is staged
(`engines/embedded/bronze_ahead.py`), on real Delta tables.

Bronze must be the table the staged records' text gave before (the SQL contract's path still
writes it that way): same schema, same rows. Staging then keeps a record's text only where
quarantine may need it, so quarantine's rows must still carry theirs, an expectation that
reads the text must still see it, and the files must enter the table only at bronze's commit.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from digital_finance import Lakehouse
from digital_finance.config import RunConfig
from digital_finance.definition.expectations import Action, Expectation
from digital_finance.engines.embedded import bronze_ahead, staging
from digital_finance.engines.embedded.bronze_ahead import SCHEMA, BronzeAhead
from digital_finance.lakehouse.storage import location
from tests.conftest import read_delta, rows


def _stock(n: int, price: str | None = None) -> str:
    return json.dumps(
        {
            "stock_id": n % 50 + 1,
            "company_id": 1,
            "symbol": f"S{n}",
            "price": price if price is not None else f"{n}.25",
            "volume": n,
            "exchange": "NYSE",
            "currency": "USD",
            "timestamp": 1_700_000_000_000 + n,
        }
    )


def _inputs(folder: Path) -> Path:
    """Two files: good records, blank lines, broken JSON, a contract break, a big price."""
    folder.mkdir(parents=True)
    lines = [_stock(n) for n in range(300)]
    lines[10] = ""
    lines[11] = "   "
    lines[20] = '{"stock_id": 1, "price": '
    lines[30] = _stock(30, price="-5")
    lines[40] = _stock(40, price="5000000.5")
    (folder / "a.json").write_text("\n".join(lines[:150]) + "\n")
    (folder / "b.json").write_text("\r\n".join(lines[150:]) + "\r\n")
    return folder


def _big_price() -> Expectation:
    return Expectation("price_below_a_million", "stocks", "price < 1000000", Action.QUARANTINE)


def _lake(root: Path, contract: str, *rules: Expectation) -> Lakehouse:
    return Lakehouse(root, dataclasses.replace(RunConfig(), contract=contract, expectations=rules))


def test_bronze_from_the_chunks_is_the_table_the_staged_text_gave(tmp_path: Path) -> None:
    data = _inputs(tmp_path / "in")
    native = _lake(tmp_path / "native", "native", _big_price())
    sql = _lake(tmp_path / "sql", "sql", _big_price())
    native.ingest_files(stocks=[str(data)])
    sql.ingest_files(stocks=[str(data)])

    for table in ("bronze/stocks", "quarantine/stocks", "silver/stocks"):
        assert rows(tmp_path / "native", table) == rows(tmp_path / "sql", table), table
    bronze = read_delta(tmp_path / "native" / "bronze/stocks")
    assert bronze.schema == read_delta(tmp_path / "sql" / "bronze/stocks").schema
    assert bronze.num_rows == 298  # 300 lines, two of them blank
    assert set(bronze.column("_batch_id").to_pylist()) == {1}
    assert DeltaTable(str(tmp_path / "native" / "bronze/stocks")).schema().to_arrow() == (
        DeltaTable(str(tmp_path / "sql" / "bronze/stocks")).schema().to_arrow()
    )
    quarantined = {
        r["line_number"]: r
        for r in read_delta(tmp_path / "native" / "quarantine/stocks").to_pylist()
    }
    # the contract's breaks and the expectation's keep the text they came with
    assert quarantined[21]["raw"] == '{"stock_id": 1, "price": '
    assert quarantined[31]["raw"] == _stock(30, price="-5")
    assert quarantined[41]["raw"] == _stock(40, price="5000000.5")
    assert quarantined[41]["reason"] == "price_below_a_million"


def test_the_bronze_schema_is_the_one_the_staged_sql_makes() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE parsed_x (file_ordinal INTEGER, line_number BIGINT, raw VARCHAR);"
        "CREATE TABLE files_x (file_ordinal INTEGER, source_file VARCHAR, source VARCHAR)"
    )
    shell = staging.StagedDataset.__new__(staging.StagedDataset)
    shell.parsed, shell.files = "parsed_x", "files_x"
    sql = shell.bronze(3, "run", "2026-01-01T00:00:00+00:00")
    made = con.sql(f"SELECT * FROM ({sql}) LIMIT 0").to_arrow_table().schema
    utc = [
        f.with_type(pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f
        for f in made
    ]
    assert pa.schema(utc) == SCHEMA


def test_a_rule_reading_the_text_still_sees_it(tmp_path: Path) -> None:
    data = _inputs(tmp_path / "in")
    reads_text = Expectation("short_records", "stocks", "length(raw) < 10000", Action.QUARANTINE)
    lake = _lake(tmp_path / "lake", "native", reads_text)
    lake.ingest_files(stocks=[str(data)])
    reasons = [r["reason"] for r in rows(tmp_path / "lake", "quarantine/stocks")]
    assert "short_records" not in reasons  # the text was there for every record
    assert len(rows(tmp_path / "lake", "bronze/stocks")) == 298


def test_the_files_enter_the_table_at_bronzes_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _inputs(tmp_path / "in")
    lake = _lake(tmp_path / "lake", "native")
    seen: dict[str, Any] = {}
    commit = bronze_ahead.commit

    def watched(root: Any, table: str, written: bronze_ahead.BronzeFiles, *args: Any) -> Any:
        folder = tmp_path / "lake" / table
        seen["in_table_before"] = sorted(p.name for p in folder.glob("*.parquet"))
        seen["written"] = [name for name, _, _ in written.files]
        seen["in_scratch"] = all((written.folder / n).is_file() for n in seen["written"])
        return commit(root, table, written, *args)

    monkeypatch.setattr(bronze_ahead, "commit", watched)
    lake.ingest_files(stocks=[str(data)])
    assert seen["in_table_before"] == []
    assert seen["written"] and seen["in_scratch"]
    in_table = {p.name for p in (tmp_path / "lake" / "bronze/stocks").glob("*.parquet")}
    assert set(seen["written"]) <= in_table
    assert not list((tmp_path / "lake" / "_staging").glob("*/bronze-*"))


def test_a_failed_batch_leaves_no_bronze_file_anywhere(tmp_path: Path) -> None:
    data = _inputs(tmp_path / "in")
    fails = Expectation("never", "stocks", "volume < 0", Action.FAIL)
    lake = _lake(tmp_path / "lake", "native", fails)
    with pytest.raises(Exception, match="never"):
        lake.ingest_files(stocks=[str(data)])
    assert not list((tmp_path / "lake").rglob("bronze*/**/*.parquet"))
    assert not list((tmp_path / "lake").glob("bronze/stocks/*.parquet"))


def test_files_written_for_another_batch_id_are_written_again_with_the_batchs(
    tmp_path: Path,
) -> None:
    """What a batch staged before another writer committed meets: its id moved."""
    ahead = BronzeAhead(tmp_path / "ahead", 4, "run-a", datetime(2026, 1, 2, tzinfo=UTC))
    raw = pa.array(['{"a": 1}', '{"a": 2}', "   "], pa.large_string())
    numbers = pa.array([1, 2, 3], pa.int64())
    ahead.add(raw, numbers, pa.array([True, True, False]), "file", "/in/a.json")
    written = ahead.finish()
    root = location(tmp_path / "lake")
    con = duckdb.connect()
    assert bronze_ahead.commit(root, "bronze/stocks", written, 5, con) == 2
    table = read_delta(tmp_path / "lake" / "bronze/stocks")
    assert table.column("_batch_id").to_pylist() == [5, 5]
    assert sorted(table.column("record").to_pylist()) == ['{"a": 1}', '{"a": 2}']
    assert set(table.column("_run_id").to_pylist()) == {"run-a"}
    # committed once: the same batch again writes nothing
    assert bronze_ahead.commit(root, "bronze/stocks", written, 5, con) is None
    assert DeltaTable(str(tmp_path / "lake" / "bronze/stocks")).version() == 0


def test_a_writer_error_reaches_the_batch(tmp_path: Path) -> None:
    ahead = BronzeAhead(tmp_path / "ahead", 1, "run", datetime(2026, 1, 2, tzinfo=UTC))
    wrong = pa.array([[1], [2]])  # not text
    ahead.add(wrong, pa.array([1, 2], pa.int64()), pa.array([True, True]), "file", "/in/a.json")
    with pytest.raises(pa.ArrowException):
        ahead.finish()


def test_a_file_of_blank_lines_lands_as_on_the_staged_path(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "blank.json").write_text("\n   \n\t\n")
    for contract in ("native", "sql"):
        _lake(tmp_path / contract, contract).ingest_files(stocks=[str(tmp_path / "in")])
    native, sql = (DeltaTable(str(tmp_path / c / "bronze/stocks")) for c in ("native", "sql"))
    assert native.schema().to_arrow() == sql.schema().to_arrow()
    assert read_delta(tmp_path / "native" / "bronze/stocks").num_rows == 0
    assert native.transaction_version("digital-finance") == 1


def test_a_rule_whose_verdict_changes_before_the_commit_loses_no_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An expectation is asked again at each question (the clock, `random()`): one that
    passes at staging and fails at the commit must find the record's text in quarantine,
    not drop the record from both quarantine and silver."""
    from digital_finance.engines.embedded.runner import EmbeddedRunner

    data = _inputs(tmp_path / "in")
    moving = Expectation(
        "volume_under_limit", "stocks", "volume < getvariable('volume_limit')", Action.QUARANTINE
    )
    load_files = staging.StagedDataset.load_files
    begin_commit = EmbeddedRunner.begin_commit

    def staged_with_a_high_limit(self: Any, *args: Any) -> None:
        self.con.execute("SET VARIABLE volume_limit = 1000000")
        load_files(self, *args)

    def committed_with_none(self: Any, staged: Any, *args: Any) -> None:
        for dataset in staged.values():
            dataset.con.execute("SET VARIABLE volume_limit = 0")
        begin_commit(self, staged, *args)

    monkeypatch.setattr(staging.StagedDataset, "load_files", staged_with_a_high_limit)
    monkeypatch.setattr(EmbeddedRunner, "begin_commit", committed_with_none)
    _lake(tmp_path / "lake", "native", moving).ingest_files(stocks=[str(data)])
    bronze = rows(tmp_path / "lake", "bronze/stocks")
    quarantined = read_delta(tmp_path / "lake" / "quarantine/stocks").to_pylist()
    assert rows(tmp_path / "lake", "silver/stocks") == []
    assert len(quarantined) == len(bronze) == 298  # each record in one of the two, here all
    assert all(q["raw"] is not None for q in quarantined)


def test_an_unusable_expectation_leaves_no_writer_running(tmp_path: Path) -> None:
    import threading

    from digital_finance.definition.expectations import ExpectationError

    data = _inputs(tmp_path / "in")
    unusable = Expectation("no_such", "stocks", "no_such_column > 1", Action.QUARANTINE)
    lake = _lake(tmp_path / "lake", "native", unusable)
    for _ in range(2):  # a caller that retries, as a stream does
        with pytest.raises(ExpectationError):
            lake.ingest_files(stocks=[str(data)])
    names = [t.name for t in threading.enumerate() if t.is_alive()]
    assert not [n for n in names if n.startswith(("bronze-ahead", "contract"))], names
