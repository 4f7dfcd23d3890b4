"""DuckDB expands `*`, `?` and `[` in any path it reads: tables and files under such a
folder are read by Arrow instead, the one file each path names."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from digital_finance.engines.embedded import delta_reads


def _table(folder: Path, values: list[int]) -> DeltaTable:
    write_deltalake(str(folder), pa.table({"a": pa.array(values, pa.int64())}))
    return DeltaTable(str(folder))


@pytest.fixture
def globbed(tmp_path: Path) -> DeltaTable:
    """A table in `lake*/t`, beside a file named with a backslash (DuckDB's listing of the
    folder fails on it) and a `lakeX/t` holding the same file names with other rows (which
    DuckDB's expansion of `lake*` would read too)."""
    dt = _table(tmp_path / "lake*" / "t", [1, 2])
    (tmp_path / "\\-funds.json").write_text("{}")
    other = tmp_path / "lakeX" / "t"
    shutil.copytree(tmp_path / "lake*" / "t", other)
    for path in delta_reads.local_files(dt):
        pq.write_table(pa.table({"a": pa.array([99], pa.int64())}), other / Path(path).name)
    return dt


def test_a_folder_with_a_glob_character_is_not_read_by_duckdb(globbed: DeltaTable) -> None:
    assert not delta_reads.is_plain(globbed)
    assert not delta_reads.duckdb_reads(globbed)
    con = duckdb.connect()
    assert delta_reads.parquet_scan(con, "rows", globbed) is None


def test_its_files_are_read_as_the_files_they_name(globbed: DeltaTable) -> None:
    con = duckdb.connect()
    view = delta_reads.parquet_view(con, "rows", delta_reads.local_files(globbed))
    assert sorted(r[0] for r in con.execute(f"SELECT a FROM {view}").fetchall()) == [1, 2]


def test_a_column_missing_from_one_file_reads_as_null(tmp_path: Path) -> None:
    folder = tmp_path / "a*b"
    folder.mkdir()
    pq.write_table(pa.table({"a": [1]}), folder / "one.parquet")
    pq.write_table(pa.table({"a": [2], "b": ["x"]}), folder / "two.parquet")
    con = duckdb.connect()
    files = [str(folder / "one.parquet"), str(folder / "two.parquet")]
    view = delta_reads.parquet_view(con, "rows", files)
    assert con.execute(f"SELECT a, b FROM {view} ORDER BY a").fetchall() == [(1, None), (2, "x")]


def test_positions_are_refused_where_only_arrow_reads(globbed: DeltaTable) -> None:
    with pytest.raises(ValueError, match="glob character"):
        delta_reads.parquet_view(
            duckdb.connect(), "rows", delta_reads.local_files(globbed), filename=True
        )


def test_a_plain_folder_is_still_read_by_duckdb(tmp_path: Path) -> None:
    dt = _table(tmp_path / "lake" / "t", [1, 2])
    assert delta_reads.is_plain(dt) and delta_reads.duckdb_reads(dt)
    con = duckdb.connect()
    view = delta_reads.parquet_scan(con, "rows", dt, positions=True)
    assert view is not None
    assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (2,)
