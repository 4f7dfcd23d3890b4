"""Bronze's Parquet files of a staged dataset, written from the kernel's chunks while the
batch is staged.

Bronze holds every record as received with its origin; none of that waits for the
contract. So while the kernel decides a chunk and DuckDB stores the verdicts, a thread of
its own writes the chunk's text to bronze's Parquet, and staging no longer keeps every
record's text: only the records that may go to quarantine keep it (`StagedDataset`). Before,
DuckDB stored 169 MB of text for a 1M-record batch and read it back to write bronze after
staging; that copy and its memory were a third of the batch's CPU (docs/PERFORMANCE.md).

The files are written into the batch's scratch folder, not into the table: every data file
enters a table under the commit lock (`lakehouse.orphans` counts on it), and staging runs
before the lock is taken. Bronze's step moves them in (an upload on an object store) and
commits them. The batch id written into them is the one the plan gave before the lock;
when another writer committed meanwhile and the batch id moved, bronze's step writes the
files again with the id the batch got.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake.transaction import AddAction, RemoveAction

from digital_finance.arrow_arrays import constant_int32, int_array, strings
from digital_finance.engines.embedded import delta_io, delta_reads
from digital_finance.engines.embedded.delta_io import ROW_GROUP_ROWS, TARGET_FILE_BYTES
from digital_finance.lakehouse.layout import BRONZE_UNINDEXED
from digital_finance.lakehouse.storage import Location

# bronze's layout (docs/CONTRACT_RULES.md): the staged record as received, with its origin;
# `StagedDataset.bronze` is the same rows in SQL, and a test holds the two to one schema
SCHEMA = pa.schema(
    [
        ("record", pa.string()),
        ("source", pa.string()),
        ("source_file", pa.string()),
        ("line_number", pa.int64()),
        ("_batch_id", pa.int64()),
        ("_run_id", pa.string()),
        ("_ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)
_CONSTANT = ("source", "source_file", "_batch_id", "_run_id", "_ingested_at")
_TEXT = pa.dictionary(pa.int32(), pa.string())
# how the chunks reach the writer: the origin's text columns as one-word dictionaries (the
# same Parquet as plain text, without a copy of the path per row)
_WRITTEN = pa.schema(
    [
        f.with_type(_TEXT)
        if f.name in ("source", "source_file", "_run_id")
        else f.with_type(pa.large_string())  # as the reader splits the text: no copy
        if f.name == "record"
        else f
        for f in SCHEMA
    ]
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# chunks waiting for the writer: each holds its text until written, so few
_QUEUED = 4
_MAX_SLICES = 64  # blank lines of a chunk dropped by slicing; above, the chunk is filtered


@dataclass(frozen=True)
class _Chunk:
    raw: pa.ChunkedArray | pa.Array
    line_number: pa.ChunkedArray | pa.Array
    keep: pa.ChunkedArray | pa.Array | None  # None: every line is a record
    source: str
    source_file: str


@dataclass(frozen=True)
class BronzeFiles:
    """What the writer left in its folder: (file name, bytes, rows) per file, for `batch_id`."""

    folder: Path
    batch_id: int
    files: list[tuple[str, int, int]]

    def paths(self) -> list[str]:
        return [str(self.folder / name) for name, _, _ in self.files]

    def moved_into(self, root: Location, table: str) -> list[AddAction]:
        """Move the files into `table`'s folder (upload them to an object store); the add
        actions that commit them."""
        now_ms = int(time.time() * 1000)
        where = root.child(table)
        if root.is_local:
            where.path.mkdir(parents=True, exist_ok=True)
        actions = []
        for name, size, rows in self.files:
            local = self.folder / name
            if root.is_local:
                try:
                    os.replace(local, where.path / name)
                except OSError:  # another file system (a symlinked table folder)
                    shutil.move(local, where.path / name)
            else:
                where.upload(local, name)
            actions.append(delta_io.added(name, size, rows, now_ms))
        return actions


def commit(
    root: Location, table: str, written: BronzeFiles, batch_id: int, con: duckdb.DuckDBPyConnection
) -> int | None:
    """Commit the files to `table` as batch `batch_id`: rows written, or None when the table
    holds the batch already. Files written for another batch id are written again (on
    `con`) with this one."""
    if delta_io.committed_batch(root, table) >= batch_id:
        return None
    if written.batch_id != batch_id and written.files:  # without rows the id is nowhere
        view = delta_reads.parquet_view(con, f"bronze_ahead_{uuid.uuid4().hex}", written.paths())
        sql = f"SELECT * REPLACE ({int(batch_id)}::BIGINT AS _batch_id) FROM {view}"
        return delta_io.write_query(root, table, con, sql, batch_id, "append")
    actions = written.moved_into(root, table)
    dt = delta_io.open_table(root, table)
    if dt is None:
        delta_io.create_with_files(root, table, actions, SCHEMA, batch_id)
    else:
        delta_io.commit_actions(dt, list[AddAction | RemoveAction](actions), batch_id, "append")
    return sum(rows for _, _, rows in written.files)


def _kept(table: pa.Table, keep: pa.ChunkedArray | pa.Array) -> pa.Table:
    """The rows of `table` whose `keep` is true (a null is false).

    As slices of it where blank lines are few: `Table.filter` imports pyarrow.compute, 80 ms
    with the interpreter held, in the middle of staging, where the kernel's chunks wait for
    it. Where they are many (records separated by blank lines) the slices would cost more
    than that, and the chunk is filtered.
    """
    chunks = keep.chunks if isinstance(keep, pa.ChunkedArray) else [keep]
    mask = np.concatenate([_true_bits(c) for c in chunks]) if chunks else np.zeros(0, bool)
    if len(mask) != table.num_rows:
        raise ValueError(f"{len(mask)} verdicts for {table.num_rows} lines")
    dropped = np.flatnonzero(~mask)
    if len(dropped) > _MAX_SLICES:
        return table.filter(pa.array(mask))
    runs: list[pa.Table] = []
    start = 0
    for line in dropped.tolist():
        if line > start:
            runs.append(table.slice(start, line - start))
        start = line + 1
    if start < table.num_rows:
        runs.append(table.slice(start))
    return pa.concat_tables(runs) if runs else table.slice(0, 0)


def _true_bits(array: pa.Array) -> np.ndarray[tuple[int], np.dtype[np.bool_]]:
    """Which values of a boolean array are true, from its bitmaps (`to_numpy` imports
    pandas, and pandas pyarrow.compute); none of a null-typed array."""
    n, start = len(array), array.offset
    if array.type != pa.bool_():
        if array.type == pa.null():
            return np.zeros(n, dtype=bool)
        raise TypeError(f"`keep` must be boolean, not {array.type}")
    validity, values = array.buffers()

    def bits(buffer: pa.Buffer) -> np.ndarray[tuple[int], np.dtype[np.bool_]]:
        packed = np.frombuffer(buffer, dtype=np.uint8)
        return np.unpackbits(packed, bitorder="little")[start : start + n].astype(bool)

    true = bits(values)
    return true & bits(validity) if validity is not None else true


class BronzeAhead:
    """Writes one dataset's bronze rows of a batch on a thread while the batch is staged."""

    def __init__(self, folder: Path, batch_id: int, run_id: str, ingested_at: datetime) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.batch_id = batch_id
        self._run_id = run_id
        # microseconds since the epoch, as the column holds them
        self._ingested_us = (ingested_at - _EPOCH) // timedelta(microseconds=1)
        self._queue: queue.Queue[_Chunk | None] = queue.Queue(_QUEUED)
        self._files: list[tuple[str, int, int]] = []
        self._error: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(target=self._write_all, name="bronze-ahead", daemon=True)
        self._thread.start()

    def add(
        self,
        raw: pa.ChunkedArray | pa.Array,
        line_number: pa.ChunkedArray | pa.Array,
        keep: pa.ChunkedArray | pa.Array,
        source: str,
        source_file: str,
    ) -> None:
        """Queue a decided chunk's lines; those whose `keep` is false (blank) are not records."""
        if self._error is not None:
            raise self._error
        chunks = keep.chunks if isinstance(keep, pa.ChunkedArray) else [keep]
        every = all(c.null_count == 0 and c.true_count == len(c) for c in chunks)
        self._queue.put(_Chunk(raw, line_number, None if every else keep, source, source_file))

    def end(self) -> None:
        """No more chunks: the writer writes what it holds and closes its file, while the
        batch goes on."""
        if not self._done:
            self._queue.put(None)  # interrupted while the queue is full: asked again later
            self._done = True

    def finish(self) -> BronzeFiles:
        """Wait for the writer; the files it wrote (its error, if it failed)."""
        self._stop()
        if self._error is not None:
            raise self._error
        return BronzeFiles(self.folder, self.batch_id, list(self._files))

    def close(self) -> None:
        """Stop the writer, whatever it was doing (the files go with the scratch folder)."""
        self._stop()

    def _stop(self) -> None:
        self.end()
        self._thread.join()

    def _write_all(self) -> None:
        pending: list[pa.Table] = []
        held = 0
        out: tuple[pq.ParquetWriter, pa.NativeFile, str] | None = None
        rows = 0
        while (chunk := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drained, so that `add` never waits on a writer that stopped
            try:
                table = self._rows(chunk)
                pending.append(table)
                held += table.num_rows
                if held < ROW_GROUP_ROWS:
                    continue
                out, rows = self._write(pa.concat_tables(pending), out, rows)
                pending, held = [], 0
            except BaseException as exc:  # raised to the batch by `add` or `finish`
                self._error = exc
        try:
            if self._error is None and held:
                out, rows = self._write(pa.concat_tables(pending), out, rows)
            if out is not None:
                self._close(out, rows)
        except BaseException as exc:
            self._error = exc

    def _rows(self, chunk: _Chunk) -> pa.Table:
        # built from buffers: `pa.array`, `pa.scalar` and `pa.table` import pandas
        table = pa.Table.from_arrays([chunk.raw, chunk.line_number], ["record", "line_number"])
        if chunk.keep is not None:
            table = _kept(table, chunk.keep)
        n = table.num_rows
        record = table.column("record")
        if record.type != pa.large_string():
            record = record.cast(pa.large_string())
        zeros = constant_int32(0, n)

        def constant(text: str) -> pa.Array:
            return pa.DictionaryArray.from_arrays(zeros, strings([text]))

        ingested = int_array(np.full(n, self._ingested_us, dtype=np.int64), pa.int64())
        return pa.Table.from_arrays(
            [
                record,
                constant(chunk.source),
                constant(chunk.source_file),
                table.column("line_number"),
                int_array(np.full(n, self.batch_id, dtype=np.int64), pa.int64()),
                constant(self._run_id),
                ingested.view(pa.timestamp("us", tz="UTC")),
            ],
            schema=_WRITTEN,
        )

    def _write(
        self, table: pa.Table, out: tuple[pq.ParquetWriter, pa.NativeFile, str] | None, rows: int
    ) -> tuple[tuple[pq.ParquetWriter, pa.NativeFile, str] | None, int]:
        if out is None:
            name = f"part-{uuid.uuid4()}.parquet"
            sink = pa.OSFile(str(self.folder / name), "wb")
            try:
                writer = pq.ParquetWriter(
                    sink,
                    _WRITTEN,
                    compression="zstd",
                    compression_level=1,
                    # the record's text is unique and large: no dictionary, no min/max
                    use_dictionary=list(_CONSTANT),
                    write_statistics=[f.name for f in SCHEMA if f.name not in BRONZE_UNINDEXED],
                    store_schema=False,  # read as plain text, like the files DuckDB writes
                )
            except BaseException:
                sink.close()
                raise
            out, rows = (writer, sink, name), 0
        writer, sink, _ = out
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        rows += table.num_rows
        if sink.tell() >= TARGET_FILE_BYTES:
            self._close(out, rows)
            return None, 0
        return out, rows

    def _close(self, out: tuple[pq.ParquetWriter, pa.NativeFile, str], rows: int) -> None:
        writer, sink, name = out
        writer.close()
        sink.close()
        self._files.append((name, (self.folder / name).stat().st_size, rows))
