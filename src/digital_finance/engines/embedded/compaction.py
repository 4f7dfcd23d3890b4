"""Compaction in bounded steps: rewrite small files beside the writers, swap them in under
the commit lock.

delta-rs's `optimize.compact` reads, rewrites and commits in one call, so it has to run
under the commit lock, and every writer waits for the whole rewrite: in a stream at 20k
events/s, five minutes of bronze took 4.9 s, which every record of the next batch waited
for. Here the rewrite is split from the commit:

- `plan` picks the table's oldest small files, up to about one target file's bytes (so a
  step's cost is bounded whatever the backlog), and only when there are enough of them;
- `rewrite` reads them with DuckDB and writes one file into a scratch folder (marked in use,
  so no clean-up by another writer takes it), with no lock held: writers go on committing;
- `swap`, under the commit lock, checks that every planned file is still in the table (a
  MERGE may have replaced one meanwhile: then the step is dropped and the files stay as
  they are), moves the new file into the table's folder and commits the removals and the
  addition as one version that changes no row (`dataChange` false, so a streaming reader of
  the table skips it) and no app transaction (batches already committed stay skipped).

Rows are read as the engine reads them (union by name across files) and times from Spark's
INT96 are given their zone back, so the new file holds exactly the rows the old ones did.
Local tables that DuckDB reads exactly (`delta_reads.is_plain`) only; the others are compacted
by delta-rs under the lock (`lakehouse.maintenance`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties
from deltalake.transaction import AddAction, RemoveAction

from digital_finance.contract.compiled_sql import ident
from digital_finance.engines.embedded import delta_io, delta_reads
from digital_finance.engines.embedded.databases import connect
from digital_finance.lakehouse.scratch import scratch_folder
from digital_finance.lakehouse.storage import Location

# one step's database: a background step must not take the memory or the cores of the
# batches it runs beside
STEP_MEMORY = "1GB"
STEP_THREADS = 1
COMPACTION_TAG = "digital_finance.maintenance"


@dataclass(frozen=True)
class Step:
    """The small files one step rewrites into one: (path relative to the table, bytes)."""

    table: str
    files: tuple[tuple[str, int], ...]
    version: int  # the table's version they were planned at


@dataclass(frozen=True)
class Rewritten:
    """A step's new file, written in a scratch folder, not yet in the table."""

    step: Step
    staged: Path
    rows: int
    size: int


def plan(
    dt: DeltaTable, table: str, small_bytes: int, min_files: int, budget_bytes: int
) -> Step | None:
    """The oldest small files of `dt`, up to `budget_bytes`, when it holds at least
    `min_files` small files; None when there is nothing to do or DuckDB cannot read it."""
    if not delta_reads.is_plain(dt):
        return None
    actions = dt.get_add_actions(flatten=True)
    if len(actions) < min_files:
        return None
    paths = actions.column("path").to_pylist()
    sizes = actions.column("size_bytes").to_pylist()
    times = actions.column("modification_time").to_pylist()
    counted = actions.column("num_records").to_pylist()
    # a file whose row count the log does not give cannot be checked after its rewrite
    small = sorted(
        (when, path, int(size))
        for path, size, when, rows in zip(paths, sizes, times, counted, strict=True)
        if size < small_bytes and rows is not None
    )
    if len(small) < min_files:
        return None
    chosen: list[tuple[str, int]] = []
    total = 0
    for _, path, size in small:
        if chosen and total + size > budget_bytes:
            break
        chosen.append((path, size))
        total += size
    if len(chosen) < 2:
        return None
    return Step(table, tuple(chosen), dt.version())


@contextlib.contextmanager
def rewriting(root: Location, step: Step, dt: DeltaTable) -> Iterator[Rewritten]:
    """The step's files rewritten as one, in a scratch folder that lives for the block."""
    with scratch_folder(root, f"compact-{uuid.uuid4().hex}") as folder:
        yield _rewrite(root, step, dt, folder)


def _rewrite(root: Location, step: Step, dt: DeltaTable, folder: Path) -> Rewritten:
    con = connect(folder / "spill", STEP_MEMORY, STEP_THREADS)
    try:
        con.execute("SET preserve_insertion_order = true")  # bronze stays in arrival order
        table_folder = root.path / step.table
        files = [str(table_folder / unquote(path)) for path, _ in step.files]
        source = delta_reads.parquet_view(con, "_small_files", files)
        present = {row[0] for row in con.execute(f"DESCRIBE {source}").fetchall()}
        schema = pa.schema(dt.schema().to_arrow())
        zoned = [
            f.name
            for f in schema
            if pa.types.is_timestamp(f.type) and f.type.tz and f.name in present
        ]
        # files written by Spark may hold INT96 times, which DuckDB reads without a zone
        fix = ", ".join(f"{ident(c)}::TIMESTAMPTZ AS {ident(c)}" for c in zoned)
        star = f"* REPLACE ({fix})" if fix else "*"
        staged = folder / f"part-{uuid.uuid4()}-compacted.zstd.parquet"
        ((rows,),) = con.execute(
            f"COPY (SELECT {star} FROM {source}) TO ? ({delta_io.DUCKDB_PARQUET})",
            [str(staged)],
        ).fetchall()
    finally:
        con.close()
    return Rewritten(step, staged, int(rows), staged.stat().st_size)


def swap(root: Location, done: Rewritten, dt: DeltaTable) -> bool:
    """Put the rewritten file in place of the step's files; the caller holds the commit
    lock and `dt` is the table at its latest version. False, and the table untouched, when
    a planned file is no longer in the table."""
    current = _records(dt)  # one read of the log's files, under the lock
    if any(path not in current for path, _ in done.step.files):
        return False
    expected = sum(current[path] for path, _ in done.step.files)
    if expected != done.rows:  # the log's counts must agree with what was read
        raise RuntimeError(
            f"compaction of {done.step.table} read {done.rows} rows where the log names "
            f"{expected}: nothing was changed"
        )
    name = done.staged.name
    target = root.path / done.step.table / name
    os.replace(done.staged, target)
    now_ms = int(time.time() * 1000)
    added = AddAction(name, done.size, {}, now_ms, False, json.dumps({"numRecords": done.rows}))
    removed = [RemoveAction(path, False, now_ms, size) for path, size in done.step.files]
    dt.create_write_transaction(
        list[AddAction | RemoveAction]([added, *removed]),
        mode="append",
        schema=dt.schema(),
        commit_properties=CommitProperties(
            custom_metadata={COMPACTION_TAG: f"compacted {len(removed)} files"}
        ),
        # under the lock: the pass checkpoints the table afterwards, with the lock released
        post_commithook_properties=PostCommitHookProperties(create_checkpoint=False),
    )
    return True


def _records(dt: DeltaTable) -> dict[str, int]:
    """Each current file of the table (its path as the log names it) and its row count."""
    actions = dt.get_add_actions(flatten=True)
    return {
        path: int(rows or 0)
        for path, rows in zip(
            actions.column("path").to_pylist(),
            actions.column("num_records").to_pylist(),
            strict=True,
        )
    }


def table_files(dt: Any) -> list[int]:
    """The sizes of the table's current files."""
    actions = dt.get_add_actions(flatten=True)
    if not len(actions):
        return []
    return [int(v) for v in actions.column("size_bytes").to_pylist()]
