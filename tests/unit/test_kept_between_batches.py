"""What a long-lived runner keeps between batches: DuckDB databases and opened Delta tables,
each given back only when it is as good as new."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from digital_finance.engines.embedded import delta_io
from digital_finance.engines.embedded.databases import Databases
from digital_finance.lakehouse.storage import Location


def test_a_database_is_lent_again_only_clean(tmp_path: Path) -> None:
    databases = Databases("256MB", 1)
    with databases.lend(tmp_path / "a") as first:
        first.execute("CREATE TABLE staged AS SELECT 1 AS x")
        first.execute("CREATE VIEW checked AS SELECT * FROM staged")
        first.register("lines", pa.table({"y": [1]}))
    with databases.lend(tmp_path / "b") as second:
        assert second is first  # kept, and nothing of the last batch is left in it
        assert second.execute("SELECT count(*) FROM duckdb_tables()").fetchall() == [(0,)]
        with pytest.raises(duckdb.CatalogException):
            second.execute("SELECT * FROM staged")
        assert second.execute("SELECT current_setting('memory_limit')").fetchone() is not None


def test_a_failed_batch_gives_no_database_back(tmp_path: Path) -> None:
    databases = Databases("256MB", 1)
    with pytest.raises(RuntimeError), databases.lend(tmp_path / "a") as failed:
        raise RuntimeError("the batch failed")
    with databases.lend(tmp_path / "b") as fresh:
        assert fresh is not failed


def test_a_database_that_spilled_is_replaced(tmp_path: Path) -> None:
    databases = Databases("64MB", 1)
    with databases.lend(tmp_path / "a") as spilled:
        spilled.execute("CREATE TABLE t AS SELECT md5(range::VARCHAR) AS b FROM range(2000000)")
        spilled.execute("SELECT b FROM t ORDER BY b LIMIT 1").fetchall()
    assert any((tmp_path / "a").iterdir())  # it did spill there
    shutil.rmtree(tmp_path / "a")
    with databases.lend(tmp_path / "b") as next_one:
        assert next_one is not spilled  # DuckDB cannot move its spill folder
        next_one.execute("SELECT 1").fetchall()


def test_an_opened_table_is_brought_up_to_date_and_a_table_made_again_is_opened_anew(
    tmp_path: Path,
) -> None:
    root = Location.parse(tmp_path / "lake")
    where = tmp_path / "lake" / "t"
    write_deltalake(where, pa.table({"a": [1]}))
    first = delta_io.open_table(root, "t")
    assert first is not None and first.version() == 0
    write_deltalake(where, pa.table({"a": [2]}), mode="append")
    again = delta_io.open_table(root, "t")
    assert again is first and again.version() == 1  # the same object, read on from its log
    shutil.rmtree(where)
    assert delta_io.open_table(root, "t") is None
    for n in range(3):  # made again, with more commits than the old one had
        write_deltalake(where, pa.table({"a": [10 + n]}), mode="append")
    remade = delta_io.open_table(root, "t")
    assert remade is not None and remade is not first
    assert sorted(remade.to_pyarrow_table()["a"].to_pylist()) == [10, 11, 12]
