"""Delta writes that are safe to retry: every commit carries the batch id as an app transaction.

A table that already holds batch N (its `transaction_version(APP_ID)` is N or more) is not
written again for N. That is what makes a crash at any point, followed by a re-run, give the
same tables as an uninterrupted run: the tables committed before the crash are skipped, the
others are written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
from deltalake import (
    CommitProperties,
    DeltaTable,
    PostCommitHookProperties,
    Schema,
    Transaction,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from digital_finance.lakehouse.layout import APP_ID, BATCH_TAG
from digital_finance.lakehouse.storage import Location

# zstd level 1 writes faster than the default and makes bronze about 40% smaller. Row groups
# and files are kept moderate because the Parquet writer holds a row group in memory, and a
# row group of raw bronze records is large: this is what keeps 10M records under 2 GiB.
ROW_GROUP_ROWS = 128 * 1024
WRITER = WriterProperties(
    compression="ZSTD", compression_level=1, max_row_group_size=ROW_GROUP_ROWS
)
TARGET_FILE_BYTES = 64 * 1024 * 1024
# DuckDB's Parquet for the tables it writes (quarantine, silver, gold, compaction). Format
# version 2 encodes integers and times as deltas instead of trying a dictionary first: a 1M
# batch's silver is written in 0.9 times the time and is 12% smaller. Readers: delta-rs,
# DuckDB, pyarrow and Spark 3.3 and later (Databricks Runtime 11.3+) read it; a reader
# older than that does not (docs/DECISIONS.md, "The 1M batch, session 19").
DUCKDB_PARQUET = (
    "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, PARQUET_VERSION V2, "
    f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}"
)


# delta-rs writes a checkpoint inside every hundredth commit of a table. A stream's batches
# commit to every table in step, so each hundredth batch wrote nine checkpoints, 0.3 s more
# than its neighbours: a stream that keeps its tables (`streaming.upkeep`) checkpoints them
# on its own thread instead, and its batches commit without.
_checkpoint_in_commits: ContextVar[bool] = ContextVar("checkpoint_in_commits", default=True)
_NO_CHECKPOINT = PostCommitHookProperties(create_checkpoint=False)


@contextlib.contextmanager
def checkpoints_kept_apart() -> Iterator[None]:
    """Commits made in the block (in this thread) write no checkpoint of their own."""
    token = _checkpoint_in_commits.set(False)
    try:
        yield
    finally:
        _checkpoint_in_commits.reset(token)


def post_commit() -> PostCommitHookProperties | None:
    """The hooks a commit runs: delta-rs's own (None) unless `checkpoints_kept_apart`."""
    return None if _checkpoint_in_commits.get() else _NO_CHECKPOINT


class RowCounter:
    """Counts the rows that stream through a reader."""

    def __init__(self) -> None:
        self.rows = 0


def counted(reader: pa.RecordBatchReader) -> tuple[pa.RecordBatchReader, RowCounter]:
    """Wrap a reader so the rows written can be reported without a second query."""
    counter = RowCounter()

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            counter.rows += batch.num_rows
            yield batch

    return pa.RecordBatchReader.from_batches(reader.schema, batches()), counter


def open_table(root: Location, table: str) -> DeltaTable | None:
    """The table at its latest version, or None when it does not exist yet.

    A local table opened before by this thread is brought up to date from its log
    (`update_incremental`: one listing) instead of opened anew: a batch opens each of its
    tables two or three times, and a stream opens them every trigger (20 ms each, growing
    with the commits since the last checkpoint). A table whose `_delta_log` folder is not
    the one it was opened from (removed and made again) is opened anew. Every table write
    runs under the commit lock, so no other writer's commit lands between a read and a
    write that share the object.
    """
    where = root.child(table)
    if not where.is_local:
        return _opened(where)
    log_folder = _identity(where.path / "_delta_log")
    if log_folder is None:
        return None
    cache: OrderedDict[str, tuple[object, DeltaTable]] | None = getattr(
        _opened_here, "tables", None
    )
    if cache is None:
        cache = _opened_here.tables = OrderedDict()
    held = cache.pop(where.uri, None)
    if held is not None and held[0] == log_folder:
        if not _at_latest(where.path / "_delta_log", held[1].version()):
            try:
                held[1].update_incremental()
            except Exception:  # whatever went wrong, a fresh open says it properly
                held = None
    else:
        held = None
    dt = held[1] if held is not None else _opened(where)
    if dt is not None:
        cache[where.uri] = (log_folder, dt)
        while len(cache) > _OPENED_PER_THREAD:
            cache.popitem(last=False)
    return dt


def _at_latest(log: Path, version: int) -> bool:
    """Whether `version` is the table's latest: its commit file is there and the next one
    is not (two stats, where `update_incremental`'s listing costs 2 ms, 25 times a batch).
    Log clean-up removes old commits oldest first, so a table kept past it is brought up to
    date by the listing."""
    return (log / f"{version:020d}.json").exists() and not (
        log / f"{version + 1:020d}.json"
    ).exists()


def _identity(log: Path) -> object | None:
    """What tells a table's log from one made again at the same place: the folder's inode
    and the first commit's (inodes are reused; the first commit is gone only once the log
    has been cleaned after a checkpoint, and a table made again has one)."""
    try:
        folder = os.stat(log).st_ino
    except FileNotFoundError:
        return None
    try:
        first = os.stat(log / f"{0:020d}.json")
    except FileNotFoundError:
        return folder, None
    return folder, first.st_ino, first.st_mtime_ns


_opened_here = threading.local()
_OPENED_PER_THREAD = 32


def _opened(where: Location) -> DeltaTable | None:
    try:
        return DeltaTable(where.uri, storage_options=where.storage_options)
    except TableNotFoundError:
        return None


def committed_batch(root: Location, table: str) -> int:
    """The last batch id committed to `table` (0 when none)."""
    dt = open_table(root, table)
    if dt is None:
        return 0
    return dt.transaction_version(APP_ID) or 0


def commit_properties(batch_id: int, metadata: dict[str, Any] | None = None) -> CommitProperties:
    return CommitProperties(
        app_transactions=[Transaction(APP_ID, batch_id)],
        custom_metadata={BATCH_TAG: str(batch_id), **(metadata or {})},
    )


def append(root: Location, table: str, data: pa.RecordBatchReader, batch_id: int) -> bool:
    """Append `data` as batch `batch_id`; False when the table already has that batch."""
    dt = open_table(root, table)
    if dt is not None and (dt.transaction_version(APP_ID) or 0) >= batch_id:
        return False
    where = root.child(table)
    write_deltalake(
        # the table as opened (and kept) by this thread: opening it again by its URI costs
        # 10 to 15 ms, twice a batch; the writer brings the object to the new version
        dt if dt is not None else where.uri,
        data,
        storage_options=where.storage_options,
        mode="append",
        schema_mode="merge",
        writer_properties=WRITER,
        target_file_size=TARGET_FILE_BYTES,
        commit_properties=commit_properties(batch_id),
        post_commithook_properties=post_commit(),
    )
    return True


def append_query(
    root: Location, table: str, con: duckdb.DuckDBPyConnection, sql: str, batch_id: int
) -> int | None:
    """Append a DuckDB query's rows as batch `batch_id`; rows written, or None when done before."""
    if committed_batch(root, table) >= batch_id:
        return None
    return write_query(root, table, con, sql, batch_id, "append")


def append_nothing(root: Location, table: str, batch_id: int) -> int | None:
    """Record batch `batch_id` in an existing `table` without rows: 0, or None when done
    before."""
    dt = open_table(root, table)
    if dt is None:
        raise ValueError(f"{table} does not exist: append its rows, which give its schema")
    if (dt.transaction_version(APP_ID) or 0) >= batch_id:
        return None
    commit_actions(dt, [], batch_id, "append")
    return 0


def write_query(
    root: Location,
    table: str,
    con: duckdb.DuckDBPyConnection,
    sql: str,
    batch_id: int,
    mode: Literal["append", "overwrite"],
    info: dict[str, str] | None = None,
) -> int:
    """Write a DuckDB query's rows to `table` in one commit tagged with `batch_id` (and
    `info` in its commitInfo).

    DuckDB writes the Parquet files itself (streaming, in parallel, within its memory limit)
    and `deltalake` commits them in one transaction. Streaming the rows into `write_deltalake`
    instead let delta-rs buffer a fast producer's batches, which doubled peak memory at 10M
    records. A crash between the files and the commit leaves files no version refers to:
    invisible to readers, removed by VACUUM.
    """
    actions, schema = write_files(root, table, con, sql)
    dt = open_table(root, table)
    if dt is None:
        create_with_files(root, table, actions, schema, batch_id, mode, info)
    else:
        commit_actions(dt, list[AddAction | RemoveAction](actions), batch_id, mode, schema, info)
    return sum(json.loads(a.stats)["numRecords"] for a in actions)


def create_with_files(
    root: Location,
    table: str,
    actions: list[AddAction],
    schema: pa.Schema,
    batch_id: int,
    mode: Literal["append", "overwrite"] = "append",
    info: dict[str, str] | None = None,
) -> None:
    """Create `table` with the files `write_files` wrote, as batch `batch_id`."""
    where = root.child(table)
    create_table_with_add_actions(
        where.uri, Schema.from_arrow(_utc_timestamps(schema)), actions, mode=mode,
        storage_options=where.storage_options,
        commit_properties=commit_properties(batch_id, info),
    )  # fmt: skip


def write_files(
    root: Location, table: str, con: duckdb.DuckDBPyConnection, sql: str
) -> tuple[list[AddAction], pa.Schema]:
    """Write a query's rows as Parquet files in the table's folder, not yet committed.

    On a remote location DuckDB writes into a local spool folder and each file is uploaded
    to the table's folder, then removed: DuckDB reaches object stores only through
    extensions it downloads at run time.
    """
    remote = not root.is_local
    folder = root.scratch(f"upload-{uuid.uuid4().hex}") if remote else root.path / table
    folder.mkdir(parents=True, exist_ok=True)
    schema = con.sql(f"SELECT * FROM ({sql}) LIMIT 0").to_arrow_table().schema
    # the folder is a bound parameter: a path is never SQL text, whatever it holds
    files = con.execute(
        f"COPY ({sql}) TO ? ({DUCKDB_PARQUET}, FILE_SIZE_BYTES {TARGET_FILE_BYTES}, "
        "FILENAME_PATTERN 'part-{uuid}', APPEND true, RETURN_STATS true)",
        [str(folder)],
    ).fetchall()
    now_ms = int(time.time() * 1000)
    actions = []
    for path, count, size, *_ in files:
        if not count:  # DuckDB writes a file for no rows: a stream's quiet dataset made
            Path(path).unlink(missing_ok=True)  # one a trigger, for every reader to open
            continue
        actions.append(added(str(Path(path).relative_to(folder)), int(size), int(count), now_ms))
    if remote:
        try:
            where = root.child(table)
            for action in actions:
                where.upload(folder / action.path, action.path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return actions, schema


def added(path: str, size: int, rows: int, now_ms: int) -> AddAction:
    """The add action of a data file written for a commit (its row count as its statistics)."""
    return AddAction(path, size, {}, now_ms, True, json.dumps({"numRecords": rows}))


def commit_actions(
    dt: DeltaTable,
    actions: list[AddAction | RemoveAction],
    batch_id: int,
    mode: Literal["append", "overwrite"],
    schema: pa.Schema | None = None,
    info: dict[str, str] | None = None,
) -> None:
    """Commit files written by `write_files` (and removals) as batch `batch_id`."""
    arrow = schema if schema is not None else dt.schema().to_arrow()
    dt.create_write_transaction(
        actions,
        mode=mode,
        schema=Schema.from_arrow(_utc_timestamps(pa.schema(arrow))),
        commit_properties=commit_properties(batch_id, info),
        post_commithook_properties=post_commit(),
    )


def _utc_timestamps(schema: pa.Schema) -> pa.Schema:
    """Delta knows one zoned timestamp, UTC; DuckDB may name the zone `Etc/UTC`."""
    fields = [
        f.with_type(pa.timestamp("us", tz="UTC"))
        if pa.types.is_timestamp(f.type) and f.type.tz
        else f
        for f in schema
    ]
    return pa.schema(fields)
