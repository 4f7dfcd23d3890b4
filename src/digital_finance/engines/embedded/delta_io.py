"""Delta writes that are safe to retry: every commit carries the batch id as an app transaction.

A table that already holds batch N (its `transaction_version(APP_ID)` is N or more) is not
written again for N. That is what makes a crash at any point, followed by a re-run, give the
same tables as an uninterrupted run: the tables committed before the crash are skipped, the
others are written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

APP_ID = "digital-finance"


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


def _commit(batch_id: int, metadata: dict[str, Any] | None = None) -> CommitProperties:
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
        commit_properties=_commit(batch_id),
    )
    return True


def overwrite(root: Path, table: str, data: pa.RecordBatchReader, batch_id: int) -> bool:
    """Replace the table's contents with `data` as batch `batch_id`."""
    if committed_batch(root, table) >= batch_id:
        return False
    write_deltalake(
        _uri(root, table),
        data,
        mode="overwrite",
        schema_mode="overwrite",
        commit_properties=_commit(batch_id),
    )
    return True


def merge_latest(
    root: Path,
    table: str,
    data: pa.RecordBatchReader,
    batch_id: int,
    key: tuple[str, ...],
    event_time: str,
) -> bool:
    """MERGE a de-duplicated batch into silver: per key, the latest event wins.

    On equal event times the later batch wins, because it was received later. A new table is
    simply written, which is also what makes the first run as fast as a plain write.
    """
    dt = open_table(root, table)
    if dt is None:
        write_deltalake(_uri(root, table), data, mode="append", commit_properties=_commit(batch_id))
        return True
    if (dt.transaction_version(APP_ID) or 0) >= batch_id:
        return False
    on = " AND ".join(f"t.{k} = s.{k}" for k in key)
    newer = (
        f"s.{event_time} > t.{event_time} OR "
        f"(s.{event_time} = t.{event_time} AND s._batch_id > t._batch_id)"
    )
    (
        dt.merge(
            data,
            predicate=on,
            source_alias="s",
            target_alias="t",
            commit_properties=_commit(batch_id),
        )
        .when_matched_update_all(predicate=newer)
        .when_not_matched_insert_all()
        .execute()
    )
    return True


def read_table(root: Path, table: str) -> pa.Table | None:
    """A whole (small) table as Arrow, or None when it does not exist."""
    dt = open_table(root, table)
    return None if dt is None else dt.to_pyarrow_table()
