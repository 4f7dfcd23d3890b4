"""Delta writes that are safe to retry: every commit carries the batch id as an app transaction.

A table that already holds batch N (its `transaction_version(APP_ID)` is N or more) is not
written again for N. That is what makes a crash at any point, followed by a re-run, give the
same tables as an uninterrupted run: the tables committed before the crash are skipped, the
others are written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
from deltalake import (
    CommitProperties,
    DeltaTable,
    Schema,
    Transaction,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from digital_finance.lakehouse.layout import APP_ID

# zstd level 1 writes faster than the default and makes bronze about 40% smaller. Row groups
# and files are kept moderate because the Parquet writer holds a row group in memory, and a
# row group of raw bronze records is large: this is what keeps 10M records under 2 GiB.
ROW_GROUP_ROWS = 128 * 1024
WRITER = WriterProperties(
    compression="ZSTD", compression_level=1, max_row_group_size=ROW_GROUP_ROWS
)
TARGET_FILE_BYTES = 64 * 1024 * 1024


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


def _uri(root: Path, table: str) -> str:
    return str(root / table)


def open_table(root: Path, table: str) -> DeltaTable | None:
    """The table, or None when it does not exist yet."""
    try:
        return DeltaTable(_uri(root, table))
    except TableNotFoundError:
        return None


def committed_batch(root: Path, table: str) -> int:
    """The last batch id committed to `table` (0 when none)."""
    dt = open_table(root, table)
    if dt is None:
        return 0
    return dt.transaction_version(APP_ID) or 0


def commit_properties(batch_id: int, metadata: dict[str, Any] | None = None) -> CommitProperties:
    return CommitProperties(
        app_transactions=[Transaction(APP_ID, batch_id)],
        custom_metadata={"digital_finance.batch_id": str(batch_id), **(metadata or {})},
    )


def append(root: Path, table: str, data: pa.RecordBatchReader, batch_id: int) -> bool:
    """Append `data` as batch `batch_id`; False when the table already has that batch."""
    if committed_batch(root, table) >= batch_id:
        return False
    write_deltalake(
        _uri(root, table),
        data,
        mode="append",
        schema_mode="merge",
        writer_properties=WRITER,
        target_file_size=TARGET_FILE_BYTES,
        commit_properties=commit_properties(batch_id),
    )
    return True


def append_query(
    root: Path, table: str, con: duckdb.DuckDBPyConnection, sql: str, batch_id: int
) -> int | None:
    """Append a DuckDB query's rows as batch `batch_id`; rows written, or None when done before."""
    if committed_batch(root, table) >= batch_id:
        return None
    return write_query(root, table, con, sql, batch_id, "append")


def write_query(
    root: Path,
    table: str,
    con: duckdb.DuckDBPyConnection,
    sql: str,
    batch_id: int,
    mode: Literal["append", "overwrite"],
) -> int:
    """Write a DuckDB query's rows to `table` in one commit tagged with `batch_id`.

    DuckDB writes the Parquet files itself (streaming, in parallel, within its memory limit)
    and `deltalake` commits them in one transaction. Streaming the rows into `write_deltalake`
    instead let delta-rs buffer a fast producer's batches, which doubled peak memory at 10M
    records. A crash between the files and the commit leaves files no version refers to:
    invisible to readers, removed by VACUUM.
    """
    folder = root / table
    folder.mkdir(parents=True, exist_ok=True)
    schema = con.sql(f"SELECT * FROM ({sql}) LIMIT 0").to_arrow_table().schema
    files = con.sql(
        f"COPY ({sql}) TO '{folder}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, "
        f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}, FILE_SIZE_BYTES {TARGET_FILE_BYTES}, "
        "FILENAME_PATTERN 'part-{uuid}', APPEND true, RETURN_STATS true)"
    ).fetchall()
    now_ms = int(time.time() * 1000)
    actions = []
    rows = 0
    for path, count, size, *_ in files:
        rows += int(count)
        actions.append(
            AddAction(
                str(Path(path).relative_to(folder)),
                int(size),
                {},
                now_ms,
                True,
                json.dumps({"numRecords": int(count)}),
            )
        )
    dt = open_table(root, table)
    delta_schema = Schema.from_arrow(_utc_timestamps(schema))
    if dt is None:
        create_table_with_add_actions(
            _uri(root, table), delta_schema, actions, mode=mode,
            commit_properties=commit_properties(batch_id),
        )  # fmt: skip
    else:
        dt.create_write_transaction(
            list[AddAction | RemoveAction](actions),
            mode=mode,
            schema=delta_schema,
            commit_properties=commit_properties(batch_id),
        )
    return rows


def _utc_timestamps(schema: pa.Schema) -> pa.Schema:
    """Delta knows one zoned timestamp, UTC; DuckDB may name the zone `Etc/UTC`."""
    fields = [
        f.with_type(pa.timestamp("us", tz="UTC"))
        if pa.types.is_timestamp(f.type) and f.type.tz
        else f
        for f in schema
    ]
    return pa.schema(fields)


def parquet_scan(dt: DeltaTable) -> str | None:
    """A DuckDB `read_parquet` over the table's current files, where that reads it exactly.

    DuckDB's own Parquet reader is parallel and skips pyarrow's dataset layer (whose import
    alone costs a tenth of a second). It is exact for a plain table: no deletion vectors, no
    column mapping (reader protocol 1), no partition columns. Otherwise None: use a
    Delta-aware reader (`to_pyarrow_dataset`).
    """
    protocol = dt.protocol()
    if protocol.min_reader_version > 1 or protocol.reader_features:
        return None
    if dt.metadata().partition_columns:
        return None
    files = dt.file_uris()
    if not files:
        return None
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    # files written before a column was added lack it: union_by_name reads it as NULL
    return f"read_parquet([{listed}], union_by_name = true)"


def table_rows(dt: DeltaTable) -> int:
    """Rows of a table, from the file statistics in its log."""
    actions = dt.get_add_actions(flatten=True)
    if not len(actions):
        return 0
    return int(sum(v or 0 for v in actions.column("num_records").to_pylist()))


def read_table(root: Path, table: str) -> pa.Table | None:
    """A whole (small) table as Arrow, or None when it does not exist."""
    dt = open_table(root, table)
    return None if dt is None else dt.to_pyarrow_table()
