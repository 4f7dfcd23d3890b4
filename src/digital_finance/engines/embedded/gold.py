"""Bring gold `stock_fund_holdings` up to date with the silver tables.

Gold is the join of the current silver tables however many batches built them. It is
recomputed whole, or, for a small batch into a large lakehouse, only for the companies the
batch touched (`Touched`): their gold rows are marked deleted in the files' deletion
vectors (`row_marks`) and their join is appended. A gold row depends on one holding and one
stock of one company, so the companies of the batch's stocks and holdings, and the
companies that the batch's stocks held in gold before (a stock that moved), are all the
rows that can change. Their stocks come from gold's replaced rows and this batch's silver
winners (`_stocks_from_gold`), not from reading every stock, wherever that is exact.

The increment is exact only when gold was made from the silver versions just before this
batch's: each gold commit records the versions of silver it was computed from
(`GOLD_FROM`), and anything else in between (a compaction, a Spark batch, a missed batch)
makes gold recomputed whole.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Literal

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from digital_finance.contract.compiled_sql import ident
from digital_finance.definition.steps import JoinGold
from digital_finance.engines.embedded import (
    deletion_vectors,
    delta_io,
    delta_reads,
    row_marks,
)
from digital_finance.engines.embedded.databases import Databases
from digital_finance.lakehouse.layout import APP_ID, commit_info, tagged_batch
from digital_finance.lakehouse.scratch import scratch_folder
from digital_finance.lakehouse.storage import Location

GOLD_FROM = "digital_finance.gold_from"  # commitInfo: the silver versions gold was made from
# commitInfo: how many holdings gold's rows name (the others have no stock: the integrity
# count), kept so that an increment counts only the touched companies' holdings
GOLD_NAMED = "digital_finance.gold_named_holdings"
INCREMENT_MIN_STOCKS = 250_000  # below this the whole join costs tens of milliseconds
Way = Literal["auto", "increment", "whole"]  # `[engine] gold_write`


@dataclass(frozen=True)
class Touched:
    """What a batch brought to silver: its stocks' keys with their company, and its
    holdings' companies (None for a dataset the batch has no part of); the key of a
    holding, which gold's rows carry."""

    stock_key: tuple[str, ...]
    stocks: pa.Table | None
    holdings: pa.Table | None
    holding_key: tuple[str, ...]


def rebuild(
    root: Location,
    step: JoinGold,
    batch_id: int,
    databases: Databases | None = None,
    touched: Touched | None = None,
    always: bool = False,
) -> tuple[int, int]:
    """Bring gold up to date; returns (rows written or -1 when already done, holdings
    without stock). `databases`: the runner's, to borrow a DuckDB database from (else one
    is opened); `touched`: the batch's, for an increment where it is exact, and worth it
    (from `INCREMENT_MIN_STOCKS` stocks, or whenever exact with `always`)."""
    holdings = delta_io.open_table(root, step.holdings)
    stocks = delta_io.open_table(root, step.stocks)
    with scratch_folder(root, f"gold-{batch_id}") as temp:
        # a join larger than memory spills there, not into a `.tmp` of the current directory
        if databases is not None:
            with databases.lend(temp) as con:
                return _rebuild(root, step, batch_id, holdings, stocks, con, touched, always)
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET temp_directory = ?", [str(temp)])
            return _rebuild(root, step, batch_id, holdings, stocks, con, touched, always)
        finally:
            con.close()


def _rebuild(
    root: Location,
    step: JoinGold,
    batch_id: int,
    holdings: DeltaTable | None,
    stocks: DeltaTable | None,
    con: duckdb.DuckDBPyConnection,
    touched: Touched | None,
    always: bool,
) -> tuple[int, int]:
    if holdings is None or stocks is None:
        return (-1 if delta_io.committed_batch(root, step.table) >= batch_id else 0), 0
    if not delta_reads.table_rows(holdings):
        # no holdings, so no gold row, whatever the stocks (a stream of quotes alone): only
        # the batch is recorded, when gold is empty already
        gold = delta_io.open_table(root, step.table)
        if gold is not None and not delta_reads.table_rows(gold):
            if (gold.transaction_version(APP_ID) or 0) >= batch_id:
                return -1, 0
            delta_io.commit_actions(gold, [], batch_id, "append")
            return 0, 0
    for name, table in (("h", holdings), ("s", stocks)):
        if delta_reads.parquet_scan(con, name, table) is None:
            con.register(name, delta_reads.arrow_dataset(table))
    try:
        on = ident(step.on)
        if delta_io.committed_batch(root, step.table) >= batch_id:
            return -1, _orphans(con, on)
        made_from = {step.holdings: holdings.version(), step.stocks: stocks.version()}
        info = {GOLD_FROM: json.dumps(made_from, sort_keys=True)}
        if touched is not None:
            done = _increment(root, step, batch_id, con, touched, stocks, info, always)
            if done is not None:
                return done
        orphans = _orphans(con, on)
        info[GOLD_NAMED] = str(_count(con, "h") - orphans)
        joined = _joined(step, batch_id, "h", "s")
        rows = delta_io.write_query(root, step.table, con, joined, batch_id, "overwrite", info)
        return rows, orphans
    finally:
        for name in ("h", "s"):  # a borrowed database goes back without them
            with contextlib.suppress(duckdb.Error):
                con.unregister(name)


def _orphans(con: duckdb.DuckDBPyConnection, on: str) -> int:
    """Holdings whose company has no stock, from the silver tables."""
    (row,) = con.execute(
        f"SELECT count(*) FROM h WHERE NOT EXISTS (SELECT 1 FROM s WHERE s.{on} = h.{on})"
    ).fetchall()
    return int(row[0])


def _count(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    (row,) = con.execute(f"SELECT count(*) FROM {relation}").fetchall()
    return int(row[0])


def _joined(step: JoinGold, batch_id: int, holdings: str, stocks: str) -> str:
    """Gold's rows: the join of the holdings and stocks relations given."""
    on = ident(step.on)
    select = ", ".join(
        f"s.{ident(c)}" if c in step.from_stocks else f"h.{ident(c)}" for c in step.columns
    )
    return (
        f"SELECT {select}, {batch_id}::BIGINT AS _batch_id "
        f"FROM {holdings} h JOIN {stocks} s ON h.{on} = s.{on}"
    )


def _increment(
    root: Location,
    step: JoinGold,
    batch_id: int,
    con: duckdb.DuckDBPyConnection,
    touched: Touched,
    stocks: DeltaTable,
    info: dict[str, str],
    always: bool,
) -> tuple[int, int] | None:
    """Replace only the touched companies' gold rows; (rows appended, holdings without
    stock), or None where the increment is not exact or not worth it (then gold is
    recomputed whole)."""
    gold = delta_io.open_table(root, step.table)
    if gold is None or not root.is_local:
        return None
    made = commit_info(root.path / step.table, gold.version())
    if not _made_just_before(root, step, made, batch_id):
        return None
    if not (
        always
        or deletion_vectors.has_vectors(gold)
        or delta_reads.table_rows(stocks) >= INCREMENT_MIN_STOCKS
    ):
        return None
    columns = {*step.columns, "_batch_id"}
    if not {*touched.stock_key, *touched.holding_key} <= columns or not row_marks.usable(
        gold, pa.schema([])
    ):
        return None
    if set(pa.schema(gold.schema().to_arrow()).names) != columns:
        return None  # gold's columns changed: its new schema comes with a whole write
    scan = delta_reads.parquet_scan(con, "_gold_rows", gold, positions=True)
    if scan is None:
        return None  # gold has no file: the whole join is all there is to write
    on = ident(step.on)
    key = ", ".join(ident(k) for k in touched.stock_key)
    parts = []
    if touched.stocks is not None:
        con.register("_touched_stocks", touched.stocks)
        parts.append(f"SELECT {on} FROM _touched_stocks")
        # the companies the stocks had: a stock may have moved
        parts.append(f"SELECT {on} FROM {scan} SEMI JOIN _touched_stocks USING ({key})")
    if touched.holdings is not None:
        con.register("_touched_holdings", touched.holdings)
        parts.append(f"SELECT {on} FROM _touched_holdings")
    if not parts:
        return None
    con.execute("CREATE OR REPLACE TEMP TABLE _gold_companies AS " + " UNION ".join(parts))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _gold_replaced AS SELECT * FROM {scan} "
        f"SEMI JOIN _gold_companies USING ({on})"
    )
    replaced = con.execute(
        "SELECT filename, list(file_row_number ORDER BY file_row_number) "
        "FROM _gold_replaced GROUP BY filename"
    ).fetchall()
    # each side narrowed to the companies first, and to the columns gold takes of it: the
    # whole join is what an increment saves
    from_stocks = [c for c in step.columns if c in step.from_stocks]
    stocks_now = _stocks_from_gold(con, step, batch_id, touched.stock_key, from_stocks)
    fresh = _joined(
        step,
        batch_id,
        _narrowed(step, "h", [c for c in step.columns if c not in step.from_stocks]),
        stocks_now or _narrowed(step, "s", from_stocks),
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE _gold_fresh AS {fresh}")
    named = _named(con, step, scan, touched.holding_key, made)
    info[GOLD_NAMED] = str(named)
    adds, _ = delta_io.write_files(root, step.table, con, "SELECT * FROM _gold_fresh")
    marks = row_marks.marks_for(
        root.path / step.table, gold, {str(f): list(rows) for f, rows in replaced}
    )
    row_marks.commit(root, step.table, gold, adds, marks, batch_id, info)
    return sum(int(json.loads(a.stats)["numRecords"]) for a in adds), _count(con, "h") - named


def _narrowed(step: JoinGold, relation: str, columns: list[str]) -> str:
    """`relation`'s rows of the touched companies, with the columns gold takes of it."""
    on = ident(step.on)
    chosen = ", ".join(ident(c) for c in dict.fromkeys([step.on, *columns]))
    return f"(SELECT {chosen} FROM {relation} SEMI JOIN _gold_companies USING ({on}))"


def _stocks_from_gold(
    con: duckdb.DuckDBPyConnection,
    step: JoinGold,
    batch_id: int,
    stock_key: tuple[str, ...],
    from_stocks: list[str],
) -> str | None:
    """The touched companies' stocks now, without reading every stock of silver: their
    stocks before are in gold's replaced rows (gold held each stock of a company once per
    holding of it), less the stocks this batch won in silver (its `_batch_id`: a row group
    read, the others skipped by their statistics), plus those winners.

    Exact for every touched company that gold held, and for one that held holdings before
    but no stock (none in gold: its stocks now are this batch's). A company whose holdings
    all came with this batch and that gold did not hold may have had stocks that gold never
    saw: then None, and silver's stocks are read."""
    on = ident(step.on)
    wanted = ", ".join(ident(c) for c in dict.fromkeys([step.on, *stock_key, *from_stocks]))
    key = ", ".join(ident(k) for k in stock_key)
    for relation in ("s", "h"):
        present = {row[0] for row in con.execute(f"DESCRIBE {relation}").fetchall()}
        if "_batch_id" not in present:
            return None
    (unknown,) = con.execute(
        f"SELECT count(*) FROM (SELECT {on} FROM h SEMI JOIN _gold_companies USING ({on}) "
        f"GROUP BY {on} HAVING min(_batch_id) = {int(batch_id)} "
        f"EXCEPT SELECT {on} FROM _gold_replaced)"
    ).fetchall()
    if unknown[0]:
        return None
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _stock_winners AS SELECT {wanted} FROM s "
        f"WHERE _batch_id = {int(batch_id)}"
    )
    return (
        f"(SELECT {wanted} FROM (SELECT DISTINCT {wanted} FROM _gold_replaced) "
        f"ANTI JOIN _stock_winners USING ({key}) "
        f"UNION ALL BY NAME SELECT {wanted} FROM _stock_winners)"
    )


def _named(
    con: duckdb.DuckDBPyConnection,
    step: JoinGold,
    scan: str,
    holding_key: tuple[str, ...],
    made: dict[str, object],
) -> int:
    """How many holdings gold names once the increment is committed: those it named
    before (its last commit's `GOLD_NAMED`), less the touched companies' before, plus
    their fresh ones. A holding's key holds its company, so the touched companies'
    holdings are named by their rows alone. Counted over gold's rows where its last commit
    does not say, or the key has no company."""
    held = ", ".join(ident(k) for k in holding_key)
    before = made.get(GOLD_NAMED)
    if isinstance(before, str) and before.isdigit() and step.on in holding_key:
        (row,) = con.execute(
            f"SELECT (SELECT count(*) FROM (SELECT DISTINCT {held} FROM _gold_fresh)) - "
            f"(SELECT count(*) FROM (SELECT DISTINCT {held} FROM _gold_replaced))"
        ).fetchall()
        return int(before) + int(row[0])
    on = ident(step.on)
    (row,) = con.execute(
        f"SELECT count(*) FROM (SELECT {held} FROM {scan} ANTI JOIN _gold_companies "
        f"USING ({on}) UNION SELECT {held} FROM _gold_fresh)"
    ).fetchall()
    return int(row[0])


def _made_just_before(
    root: Location, step: JoinGold, made: dict[str, object], batch_id: int
) -> bool:
    """Whether gold's last commit (`made`: its commitInfo) was made from the silver
    versions that this batch's commits (if any) came straight after."""
    made_from = made.get(GOLD_FROM)
    if not isinstance(made_from, str):
        return False
    versions = json.loads(made_from)
    for table in (step.holdings, step.stocks):
        silver = delta_io.open_table(root, table)
        if silver is None or table not in versions:
            return False
        now, then = silver.version(), int(versions[table])
        if now == then:
            continue
        info = commit_info(root.path / table, now)
        if now != then + 1 or tagged_batch(info) != batch_id:
            return False
    return True
