"""Merge-on-read for silver: the rows a batch replaces are marked deleted, not rewritten.

Used when a small batch goes into a large silver. The winners are found on the key columns
as in `file_rewrite` (a candidate wins when its key is new, or its event is later, or equal
and from a later batch), but the rows they replace are marked in each file's deletion
vector and the winners are written as a new file: the commit writes the batch's rows and
a few kilobytes of vectors, instead of every file a random key touches (770k rows of
silver for a 1,000-record batch). The first such commit gives the table the
`deletionVectors` feature. Compaction (`digital-finance maintain`, a stream's upkeep)
rewrites the files without their deleted rows, as Delta's other writers do.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.transaction import AddAction

from digital_finance.contract.compiled_sql import ident
from digital_finance.definition.rules import LatestWins
from digital_finance.engines.embedded import (
    deletion_vectors,
    delta_io,
    delta_reads,
    file_rewrite,
    log_commit,
)
from digital_finance.lakehouse.storage import Location


@dataclass(frozen=True)
class Marks:
    """A batch's marked rows, written and not yet committed: the log actions that replace
    the touched files' vectors (and enable the feature), and the vector file."""

    actions: list[dict[str, Any]]
    vector_file: Path | None


def usable(dt: DeltaTable, candidates: pa.Schema) -> bool:
    """Whether the table can take marks: local, read exactly by DuckDB with them, and
    no schema change from the batch."""
    if not (deletion_vectors.has_vectors(dt) or deletion_vectors.can_enable(dt)):
        return False
    if not (delta_reads.is_plain(dt) or delta_reads.duckdb_reads(dt)):
        return False
    return set(candidates.names) <= set(pa.schema(dt.schema().to_arrow()).names)


def mark_replaced(
    root: Location,
    table: str,
    con: duckdb.DuckDBPyConnection,
    candidates: str,
    rule: LatestWins,
    dt: DeltaTable,
) -> tuple[list[AddAction], Marks, int]:
    """The winners' new files and the marks of the rows they replace, not committed:
    (the adds, the marks, the candidates' count)."""
    keys = ", ".join(ident(k) for k in rule.key)
    scan = delta_reads.parquet_scan(con, "_silver_rows", dt, positions=True)
    file_rewrite.find_winners(con, candidates, rule, scan, ("filename", "file_row_number"))
    replaced = con.execute(
        f"SELECT c.filename, list(c.file_row_number ORDER BY c.file_row_number) "
        f"FROM _current c SEMI JOIN _winners USING ({keys}) GROUP BY c.filename"
    ).fetchall()
    ((count,),) = con.execute(f"SELECT count(*) FROM {candidates}").fetchall()
    adds, _ = delta_io.write_files(root, table, con, "SELECT * FROM _winners")
    marks = marks_for(root.path / table, dt, {str(f): list(rows) for f, rows in replaced})
    return adds, marks, int(count)


def marks_for(folder: Path, dt: DeltaTable, replaced: dict[str, list[int]]) -> Marks:
    """The marks of `replaced` (rows by file, as DuckDB names the file) in the table at
    `folder`, merged with the vectors the files have; the vector file is written."""
    enabling = [] if deletion_vectors.has_vectors(dt) else deletion_vectors.enabling_actions(dt)
    if not replaced:
        return Marks(enabling, None)
    files = {
        str(folder / path): (str(path), int(size), int(modified), int(records))
        for path, size, modified, records in zip(
            *(
                dt.get_add_actions(flatten=True).column(c).to_pylist()
                for c in ("path", "size_bytes", "modification_time", "num_records")
            ),
            strict=True,
        )
    }
    had = (
        deletion_vectors.current_vectors(folder, dt.version())
        if deletion_vectors.has_vectors(dt)
        else {}
    )
    earlier: dict[str, list[int]] = {}
    if had:
        deleted = deletion_vectors.deleted_rows(dt)
        names = deleted.column("filename").to_pylist()
        for name, row in zip(names, deleted.column("file_row_number").to_pylist(), strict=True):
            if name in replaced:
                earlier.setdefault(name, []).append(row)
    order = sorted(replaced)
    every = [sorted({*replaced[name], *earlier.get(name, [])}) for name in order]
    actions: list[dict[str, Any]] = list(enabling)
    vector_id = uuid.uuid4()
    kept: list[tuple[str, list[int], int]] = []
    for name, rows in zip(order, every, strict=True):
        path, size, _, records = files[name]
        old = had.get(path)
        actions.append(log_commit.remove_action(path, size, old))
        if len(rows) < records:  # a file with every row deleted is only removed
            kept.append((name, rows, records))
    if not kept:
        return Marks(actions, None)
    data, placed = deletion_vectors.encode(rows for _, rows, _ in kept)
    vector_file = folder / deletion_vectors.file_name(vector_id)
    vector_file.write_bytes(data)
    for (name, rows, records), (offset, size_in_file) in zip(kept, placed, strict=True):
        path, size, modified, _ = files[name]
        stats = json.dumps({"numRecords": records, "tightBounds": False})
        vector = deletion_vectors.descriptor(vector_id, offset, size_in_file, len(rows))
        actions.append(log_commit.add_action(path, size, modified, stats, vector))
    return Marks(actions, vector_file)


def commit(
    root: Location,
    table: str,
    dt: DeltaTable,
    adds: list[AddAction],
    marks: Marks,
    batch_id: int,
    info: dict[str, str] | None = None,
) -> None:
    """Commit the new files and the marks as batch `batch_id` (`info`: commitInfo keys)."""
    new = [
        log_commit.add_action(a.path, a.size, a.modification_time, a.stats or "{}") for a in adds
    ]
    log_commit.commit(root.path / table, dt, [*marks.actions, *new], batch_id, "MERGE", info)
