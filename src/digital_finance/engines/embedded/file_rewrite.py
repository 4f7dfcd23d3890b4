"""Copy-on-write of only the files a batch touches, by DuckDB, committed by deltalake.

Used for silver when a batch is small next to the table. The winners of the batch are found
on the key columns alone (a candidate wins when its key is new, or its event is later, or
equal and from a later batch); only the files holding a key that a winner replaces are read
and written again, without those rows, and the winners are written as new files. One Delta
commit removes the old files and adds the new ones, with the batch's app transaction.

Against delta-rs's MERGE on the same batch this reads the key columns of the table instead
of whole rows, writes in parallel through DuckDB, and keeps every file no winner touches
(new keys, or keys clustered in a few files, touch few). With keys spread over every file
it still rewrites the table: that is the floor of copy-on-write (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.transaction import AddAction, RemoveAction

from digital_finance.contract.compiled_sql import ident
from digital_finance.definition.rules import LatestWins, duckdb_quote
from digital_finance.engines.embedded import delta_io, delta_reads
from digital_finance.lakehouse.storage import Location


def usable(dt: DeltaTable, candidates: pa.Schema) -> bool:
    """Whether the rewrite reads the table exactly and needs no schema change."""
    return delta_reads.is_plain(dt) and set(candidates.names) <= set(_schema(dt).names)


def _schema(dt: DeltaTable) -> pa.Schema:
    return pa.schema(dt.schema().to_arrow())


_PLACE_TYPES = {"filename": "VARCHAR", "file_row_number": "BIGINT"}


def find_winners(
    con: duckdb.DuckDBPyConnection,
    candidates: str,
    rule: LatestWins,
    scan: str | None,
    place: tuple[str, ...],
) -> None:
    """Temp tables `_current`, silver's row of every candidate key with the `place` columns
    of `scan` that say where it lies, and `_winners`, the candidates that are new or replace
    it. `scan`: a view of silver's rows, None when silver has no file (every batch so far
    quarantined: DuckDB's reader refuses no files)."""
    keys = ", ".join(ident(k) for k in rule.key)
    columns = f"{keys}, {ident(rule.event_time)}, {ident(rule.receipt_across_batches)}"
    if scan is None:
        nulls = ", ".join(f"NULL::{_PLACE_TYPES[c]} AS {c}" for c in place)
        current = f"SELECT {columns}, {nulls} FROM {candidates} WHERE false"
    else:
        where = ", ".join(place)
        current = f"SELECT {columns}, {where} FROM {scan} SEMI JOIN {candidates} USING ({keys})"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _current AS {current}")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _winners AS SELECT b.* FROM {candidates} b "
        f"LEFT JOIN _current c USING ({keys}) "
        f"WHERE c.{ident(rule.key[0])} IS NULL OR {rule.newer('b', 'c', duckdb_quote)}"
    )


def rewrite_touched(
    root: Location,
    table: str,
    con: duckdb.DuckDBPyConnection,
    candidates: str,
    rule: LatestWins,
    dt: DeltaTable,
) -> tuple[list[AddAction | RemoveAction], int]:
    """The files that bring the batch's candidates (a temp table name) into `table`, written
    and not yet committed: (the adds and removes to commit, the candidates' count)."""
    keys = ", ".join(ident(k) for k in rule.key)
    files = delta_reads.local_files(dt)
    scan = delta_reads.parquet_view(con, "_silver_files", files, filename=True) if files else None
    find_winners(con, candidates, rule, scan, ("filename",))
    touched = [
        str(row[0])
        for row in con.execute(
            f"SELECT DISTINCT c.filename FROM _current c SEMI JOIN _winners USING ({keys})"
        ).fetchall()
    ]
    ((count,),) = con.execute(f"SELECT count(*) FROM {candidates}").fetchall()
    timestamps = [f.name for f in _schema(dt) if pa.types.is_timestamp(f.type)]
    # files written by Spark may hold INT96 times, which DuckDB reads without a zone
    fix = ", ".join(f"{ident(c)}::TIMESTAMPTZ AS {ident(c)}" for c in timestamps)
    star = f"* REPLACE ({fix})" if fix else "*"
    kept = None
    if touched:
        source = delta_reads.parquet_view(con, "_touched_files", touched)
        kept = f"SELECT {star} FROM {source} ANTI JOIN _winners USING ({keys})"
    rows = f"{kept} UNION ALL BY NAME SELECT * FROM _winners" if kept else "SELECT * FROM _winners"
    adds, _ = delta_io.write_files(root, table, con, rows)
    now_ms = int(time.time() * 1000)
    folder = root.path / table  # usable() admits local tables only
    removes = [RemoveAction(str(Path(t).relative_to(folder)), True, now_ms) for t in touched]
    return [*adds, *removes], int(count)
