"""Bring a batch's latest records into silver: per key, the latest event wins.

Four ways, same result (the incremental tests run each):
- **mark**: as the rewrite, but the replaced rows are marked in the files' deletion vectors
  and only the winners are written (`row_marks`): a small batch's cost no longer follows
  silver's size. The way for small batches into a large silver; the table then carries the
  `deletionVectors` feature, which Spark, Databricks and DuckDB's delta reader read.
- **rewrite**: DuckDB finds the batch's winners on the key columns and rewrites only the
  files that hold a key they replace (`file_rewrite`); the way for small batches.
- **merge**: Delta MERGE with delta-rs, touching only what changes in the log's eyes. Its
  join holds the batch in memory and cannot spill: a 3.4M-row batch into a 4.4M-row silver
  peaked at 3.2 GiB, and capping its memory made the MERGE fail instead.
- **rebuild**: DuckDB computes the latest row per key over silver plus batch (spilling within
  its memory limit) and the result replaces silver in one commit. With keys spread across
  all files a MERGE of a large batch rewrites nearly every file anyway.

`auto` marks for small batches into a silver of `MARK_MIN_ROWS` or more (and into any
silver that has deletion vectors already), rewrites the touched files for small batches
into a smaller silver, rebuilds when the batch is large (absolutely or next to silver), and
merges where neither can read the table exactly (partitions, column mapping) or the batch
brings new columns (a rebuild, on a table with deletion vectors: delta-rs's MERGE does not
write them).

A new table's, a mark's, a rewrite's and a rebuild's files are written (`write_files`)
apart from their commit (`commit_written`), so that the runner can write them while bronze
and quarantine commit (`silver_ahead`); the commit refuses files made from a version of
silver that is no longer the latest, and a new table's once the table exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import duckdb
import pyarrow as pa
from deltalake.transaction import AddAction, RemoveAction

from digital_finance.contract.compiled_sql import ident
from digital_finance.definition.rules import LatestWins, duckdb_quote
from digital_finance.engines.embedded import (
    deletion_vectors,
    delta_io,
    delta_reads,
    file_rewrite,
    row_marks,
)
from digital_finance.lakehouse.layout import APP_ID
from digital_finance.lakehouse.storage import Location

Strategy = Literal["auto", "merge", "rebuild", "rewrite", "mark"]
Way = Literal["merge", "rebuild", "rewrite", "mark"]
MERGE_MAX_ROWS = 500_000  # above this a MERGE's in-memory join costs more than 1 GiB
MERGE_MAX_SHARE = 0.25  # a batch this large next to silver touches nearly every file
OUTPUT_BATCH_ROWS = 128 * 1024
# below this a touched-files rewrite costs a few tens of milliseconds, and keeps silver
# readable by every Delta reader (delta-rs's Arrow dataset refuses deletion vectors)
MARK_MIN_ROWS = 250_000
NEW = -1  # `Written.version` of the files that make a new table


def choose(strategy: Strategy, batch_rows: int, silver_rows: int, marked: bool = False) -> Way:
    """The way to use for a batch of `batch_rows` candidates into `silver_rows`; `marked`
    when silver's files carry deletion vectors already."""
    if strategy != "auto":
        return strategy
    if batch_rows > MERGE_MAX_ROWS or batch_rows >= MERGE_MAX_SHARE * silver_rows:
        return "rebuild"
    return "mark" if marked or silver_rows >= MARK_MIN_ROWS else "rewrite"


@dataclass(frozen=True)
class Candidates:
    """A batch's silver candidates (`sql`, one row per key) and how they are written."""

    sql: str
    batch_id: int
    rule: LatestWins
    rows: int  # an upper bound of the candidates (records that passed the contract)
    strategy: Strategy = "auto"


@dataclass(frozen=True)
class Written:
    """A batch's silver files, written and not yet committed: what the commit adds and
    removes, read from the table at `version`."""

    actions: list[AddAction | RemoveAction]
    mode: Literal["append", "overwrite"]
    schema: pa.Schema | None  # a rebuild's rows (its commit replaces the table's schema)
    offered: int  # the batch's candidates, for the report
    version: int
    marks: row_marks.Marks | None = None  # the rows the batch replaces, marked deleted

    def discard(self, root: Location, table: str) -> None:
        """Remove the files (never committed: no reader has seen them). On an object
        store they are left to `digital-finance maintain`'s vacuum."""
        if not root.is_local:
            return
        for action in self.actions:
            if isinstance(action, AddAction):
                (root.path / table / action.path).unlink(missing_ok=True)
        if self.marks is not None and self.marks.vector_file is not None:
            self.marks.vector_file.unlink(missing_ok=True)


def resolved(root: Location, table: str, batch_id: int, rows: int, strategy: Strategy) -> Strategy:
    """`strategy`, with `auto` decided for a batch of `rows` candidates at most and silver as
    it stands; `auto` when silver is new (it is appended to) or has the batch (it is left)."""
    dt = delta_io.open_table(root, table)
    if dt is None or (dt.transaction_version(APP_ID) or 0) >= batch_id:
        return "auto"
    if strategy != "auto":
        return strategy
    return choose(strategy, rows, delta_reads.table_rows(dt), deletion_vectors.has_vectors(dt))


def write_files(
    root: Location, table: str, con: duckdb.DuckDBPyConnection, batch: Candidates
) -> Written | None:
    """Silver's new files for the batch's candidates, not committed; None when
    they are not written by DuckDB (a new table on an object store, a table that has the
    batch, a delta-rs MERGE), which `merge_latest` then does whole. A new local table's
    files are the candidates themselves (`version` `NEW`).

    Every commit is made under the commit lock, so the files stay right until the
    commit as long as the table is still at `version` then (`commit_written` checks).
    """
    rule = batch.rule
    dt = delta_io.open_table(root, table)
    if dt is None and root.is_local:  # the first batch: its candidates are the table
        adds, schema = delta_io.write_files(root, table, con, batch.sql)
        offered = sum(int(json.loads(a.stats)["numRecords"]) for a in adds)
        return Written(list[AddAction | RemoveAction](adds), "append", schema, offered, NEW)
    if dt is None or (dt.transaction_version(APP_ID) or 0) >= batch.batch_id:
        return None
    way: Strategy = batch.strategy
    marked = deletion_vectors.has_vectors(dt)
    if way == "auto":  # counting silver's rows reads every file's statistics in the log
        way = choose(way, batch.rows, delta_reads.table_rows(dt), marked)
    if way == "merge" and not marked:
        return None
    con.execute(f"CREATE OR REPLACE TEMP TABLE _batch_latest AS {batch.sql}")
    if marked and way in ("merge", "rewrite"):
        way = "mark"  # neither writes deletion vectors; a rebuild below if marks cannot
    if way == "mark":
        columns = con.sql("SELECT * FROM _batch_latest LIMIT 0").to_arrow_table().schema
        if row_marks.usable(dt, columns):
            adds, marks, offered = row_marks.mark_replaced(
                root, table, con, "_batch_latest", rule, dt
            )
            return Written(list[AddAction | RemoveAction](adds), "append", None, offered,
                           dt.version(), marks)  # fmt: skip
        way = "rebuild" if marked else "rewrite"
    if way == "rewrite":
        columns = con.sql("SELECT * FROM _batch_latest LIMIT 0").to_arrow_table().schema
        if not file_rewrite.usable(dt, columns):
            return None
        actions, offered = file_rewrite.rewrite_touched(root, table, con, "_batch_latest", rule, dt)
        return Written(actions, "append", None, offered, dt.version())
    # DuckDB's own reader where it reads the table exactly: pyarrow's dataset layer
    # costs a tenth of a second to import and reads on one thread
    if delta_reads.exact_scan(con, "_silver_now", dt) is None:
        con.register("_silver_now", delta_reads.arrow_dataset(dt))
    keys = ", ".join(ident(k) for k in rule.key)
    order = ", ".join(f"{ident(c)} DESC" for c in (rule.event_time, rule.receipt_across_batches))
    latest = (
        "SELECT * FROM (SELECT * FROM _silver_now UNION ALL BY NAME "
        "SELECT * FROM _batch_latest) "
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1"
    )
    adds, schema = delta_io.write_files(root, table, con, latest)
    (row,) = con.sql("SELECT count(*) FROM _batch_latest").fetchall()
    return Written(list[AddAction | RemoveAction](adds), "overwrite", schema, int(row[0]),
                   dt.version())  # fmt: skip


def commit_written(root: Location, table: str, written: Written, batch_id: int) -> int | None:
    """Commit `written` as batch `batch_id`; the candidates' count, or None when the table
    moved since the files were made (they are removed, and nothing is committed)."""
    dt = delta_io.open_table(root, table)
    if dt is None and written.version == NEW and written.schema is not None:
        adds = [a for a in written.actions if isinstance(a, AddAction)]
        delta_io.create_with_files(root, table, adds, written.schema, batch_id)
        return written.offered
    if dt is None or dt.version() != written.version:
        written.discard(root, table)
        return None
    if written.marks is not None:
        adds = [a for a in written.actions if isinstance(a, AddAction)]
        row_marks.commit(root, table, dt, adds, written.marks, batch_id)
    else:
        delta_io.commit_actions(dt, written.actions, batch_id, written.mode, written.schema)
    return written.offered


def merge_latest(
    root: Location, table: str, con: duckdb.DuckDBPyConnection, batch: Candidates
) -> int | None:
    """Write the batch's candidates into silver; rows offered, None when done before.

    On equal event times the later batch wins, because it was received later. A new table is
    simply written, which is also what makes the first run as fast as a plain write.
    """
    sql, batch_id, rule = batch.sql, batch.batch_id, batch.rule
    for _ in range(2):  # once more when silver moved between the files and their commit
        written = write_files(root, table, con, batch)
        if written is None:
            break
        offered = commit_written(root, table, written, batch_id)
        if offered is not None:
            return offered
    dt = delta_io.open_table(root, table)
    if dt is None:
        return delta_io.append_query(root, table, con, sql, batch_id)
    if (dt.transaction_version(APP_ID) or 0) >= batch_id:
        return None
    reader = con.sql(sql).to_arrow_reader(OUTPUT_BATCH_ROWS)
    data, counter = delta_io.counted(reader)
    on = rule.key_match("s", "t", duckdb_quote)
    newer = rule.newer("s", "t", duckdb_quote)
    try:
        (
            dt.merge(
                data,
                predicate=on,
                source_alias="s",
                target_alias="t",
                merge_schema=True,  # enrichment columns configured later become new columns
                writer_properties=delta_io.WRITER,
                commit_properties=delta_io.commit_properties(batch_id),
                post_commithook_properties=delta_io.post_commit(),
            )
            .when_matched_update_all(predicate=newer)
            .when_not_matched_insert_all()
            .execute()
        )
    finally:
        reader.close()
    return counter.rows
