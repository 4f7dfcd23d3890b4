"""How the embedded engine reads a Delta table's current rows.

DuckDB's own Parquet reader where it reads them exactly (a local table whose only reader
feature, if any, is deletion vectors, applied here as an anti join, in a folder whose path
DuckDB takes literally): it reads in parallel, within its memory limit, and costs nothing to
import. delta-rs's Arrow dataset elsewhere. Writes and commits are `delta_io`'s.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from digital_finance.contract.compiled_sql import ident
from digital_finance.engines.embedded import deletion_vectors
from digital_finance.engines.embedded.delta_io import open_table
from digital_finance.lakehouse.storage import Location

# DuckDB expands these in any path it reads, listing every folder of the path on the way: a
# lakehouse in `lake*` would read the same file names of `lakeX` too, and a sibling named with
# a backslash fails the listing ("cannot join incompatible paths"); escaping (`[*]`) still lists
GLOB_CHARACTERS = frozenset("*?[")


def duckdb_opens(path: str) -> bool:
    """Whether DuckDB's readers take `path` as the one file it names (no glob character)."""
    return GLOB_CHARACTERS.isdisjoint(path)


def _duckdb_opens_table(dt: DeltaTable) -> bool:
    # DuckDB reaches object stores only by extensions; a file may lie outside the table's
    # folder (an absolute path in the log), so each is looked at too
    return (
        deletion_vectors.is_local(dt)
        and duckdb_opens(deletion_vectors.local_path(dt.table_uri))
        and all(duckdb_opens(f) for f in local_files(dt))
    )


def is_plain(dt: DeltaTable) -> bool:
    """Whether the table's current files are its rows, for DuckDB's Parquet reader.

    True for a local table without deletion vectors, column mapping (reader protocol 1) or
    partition columns, in a folder DuckDB opens (`duckdb_opens`): its files can be read, and
    rewritten, as they are.
    """
    return _duckdb_opens_table(dt) and _plain_protocol(dt)


def duckdb_reads(dt: DeltaTable) -> bool:
    """Whether DuckDB reads the table's rows exactly: a plain table (`is_plain`), or a local
    one whose only reader feature is deletion vectors, which `parquet_scan` applies."""
    if not _duckdb_opens_table(dt):
        return False
    if _plain_protocol(dt):
        return True
    protocol = dt.protocol()
    return (
        protocol.min_reader_version == 3
        and set(protocol.reader_features or []) == {deletion_vectors.FEATURE}
        and not dt.metadata().partition_columns
    )


def _plain_protocol(dt: DeltaTable) -> bool:
    # no reader feature (deletion vectors, column mapping) and no partition columns
    protocol = dt.protocol()
    if protocol.min_reader_version > 1 or protocol.reader_features:
        return False
    return not dt.metadata().partition_columns


def parquet_view(
    con: duckdb.DuckDBPyConnection,
    name: str,
    files: list[str],
    filename: bool = False,
    row_number: bool = False,
) -> str:
    """A view `name` over DuckDB's Parquet reader of these files, with each row's file when
    `filename` and its position in the file when `row_number`; returns the quoted name.

    The view is made from a relation (`read_parquet` called from Python), so the paths reach
    DuckDB as values, never as SQL text. Files written before a column was added lack it:
    `union_by_name` reads it as NULL.

    Files whose paths DuckDB would expand (`duckdb_opens`) are read through a pyarrow dataset,
    without `filename` or `row_number`: readers that need those check `is_plain` or
    `duckdb_reads` first.
    """
    if not all(duckdb_opens(f) for f in files):
        if filename or row_number:
            raise ValueError(
                "DuckDB cannot be given a path with a glob character, and the Arrow reader "
                "gives no file positions: check is_plain or duckdb_reads first"
            )
        con.register(name, _arrow_files(files))
        return ident(name)
    relation = con.read_parquet(
        files, union_by_name=True, filename=filename, file_row_number=row_number
    )
    relation.create_view(name, replace=True)
    return ident(name)


def _arrow_files(files: list[str]) -> Any:
    """The files as one pyarrow dataset, a column missing from a file read as null (as
    `union_by_name`)."""
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    # types widened where files differ, as `union_by_name` widens them
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    return pads.dataset(files, schema=schema, format="parquet")


def parquet_scan(
    con: duckdb.DuckDBPyConnection, name: str, dt: DeltaTable, positions: bool = False
) -> str | None:
    """A view over the table's current rows, where DuckDB's reader reads them exactly:
    deletion vectors applied, and with each row's `filename` and `file_row_number` when
    `positions`.

    DuckDB's own Parquet reader is parallel and skips pyarrow's dataset layer (whose import
    alone costs a tenth of a second). None for a table DuckDB does not read (`duckdb_reads`)
    or with no files: use a Delta-aware reader then (`arrow_rows`).
    """
    if not duckdb_reads(dt):
        return None
    files = local_files(dt)
    if not files:
        return None
    if not deletion_vectors.has_vectors(dt):
        return parquet_view(con, name, files, filename=positions, row_number=positions)
    # deleted rows by the file's place in the list and the row's in the file: an anti join
    # on integers (on every row's file name it cost gold a third more at 770k rows)
    import pyarrow.compute as pc  # here: its import costs a CLI run 50 ms, for this path alone

    deleted = deletion_vectors.deleted_rows(dt)
    place = pc.index_in(deleted.column("filename"), value_set=pa.array(files, pa.string()))
    gone = pa.table({"file_index": pc.cast(place, pa.uint64()),
                     "file_row_number": deleted.column("file_row_number")})  # fmt: skip
    con.register(f"{name}_deleted", gone)
    relation = con.read_parquet(files, union_by_name=True, filename=positions)
    relation.project("*, file_index, file_row_number").create_view(f"{name}_all", replace=True)
    hidden = "file_index" if positions else "file_index, file_row_number"
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {ident(name)} AS SELECT * EXCLUDE ({hidden}) "
        f"FROM {ident(name + '_all')} "
        f"ANTI JOIN {ident(name + '_deleted')} USING (file_index, file_row_number)"
    )
    return ident(name)


def arrow_rows(dt: DeltaTable, columns: list[str] | None = None) -> pa.Table:
    """The table's current rows as Arrow, by delta-rs: its Arrow dataset where it reads
    the table, its query engine where the files carry deletion vectors (the dataset
    refuses those tables)."""
    if not deletion_vectors.has_vectors(dt):
        return dt.to_pyarrow_table(columns=columns)
    from deltalake import QueryBuilder

    chosen = "*" if columns is None else ", ".join(ident(c) for c in columns)
    found = QueryBuilder().register("t", dt).execute(f"SELECT {chosen} FROM t")
    return pa.RecordBatchReader.from_stream(found).read_all()


def arrow_dataset(dt: DeltaTable) -> Any:
    """`arrow_rows` as a pyarrow dataset (its scanners, filters and `head`): the Arrow
    dataset itself where delta-rs gives one, else the rows in memory."""
    if not deletion_vectors.has_vectors(dt):
        return dt.to_pyarrow_dataset()
    import pyarrow.dataset as pads

    return pads.dataset(arrow_rows(dt))


def exact_scan(
    con: duckdb.DuckDBPyConnection, name: str, dt: DeltaTable, positions: bool = False
) -> str | None:
    """`parquet_scan` with zoned times made zoned again: files written by Spark may hold
    INT96 times, which DuckDB reads without a zone. None where `parquet_scan` gives none."""
    files = parquet_scan(con, f"{name}_files", dt, positions)
    if files is None:
        return None
    present = {row[0] for row in con.execute(f"DESCRIBE {files}").fetchall()}
    zoned = [
        f.name
        for f in pa.schema(dt.schema().to_arrow())
        if pa.types.is_timestamp(f.type) and f.type.tz and f.name in present
    ]
    fix = ", ".join(f"{ident(c)}::TIMESTAMPTZ AS {ident(c)}" for c in zoned)
    star = f"* REPLACE ({fix})" if fix else "*"
    con.execute(f"CREATE OR REPLACE TEMP VIEW {ident(name)} AS SELECT {star} FROM {files}")
    return ident(name)


def local_files(dt: DeltaTable) -> list[str]:
    """The current files of a local table as paths DuckDB opens.

    `file_uris` percent-encodes the table's folder (`a b` becomes `a%20b`) although the
    result is a plain path: decoded here, or a lakehouse under such a folder is unreadable.
    """
    return [unquote(uri) for uri in dt.file_uris()]


def table_rows(dt: DeltaTable) -> int:
    """Rows of a table, from the file statistics in its log, less the rows its deletion
    vectors mark."""
    actions = dt.get_add_actions(flatten=True)
    if not len(actions):
        return 0
    rows = int(sum(v or 0 for v in actions.column("num_records").to_pylist()))
    if deletion_vectors.has_vectors(dt):
        rows -= deletion_vectors.deleted_count(dt)
    return rows


def read_table(root: Location, table: str) -> pa.Table | None:
    """A whole (small) table as Arrow, or None when it does not exist."""
    dt = open_table(root, table)
    return None if dt is None else arrow_rows(dt)
