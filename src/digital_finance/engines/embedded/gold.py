"""Rebuild gold `stock_fund_holdings` from the silver tables.

Gold is recomputed from silver as a whole, so it is exactly the join of the current silver
tables however many batches built them. At the sizes this engine is for, the join is cheap
next to parsing; an incremental gold is a later optimisation.
"""

from __future__ import annotations

import contextlib

import duckdb
from deltalake import DeltaTable

from digital_finance.contract.compiled_sql import ident
from digital_finance.definition.steps import JoinGold
from digital_finance.engines.embedded import delta_io
from digital_finance.engines.embedded.databases import Databases
from digital_finance.lakehouse.layout import APP_ID
from digital_finance.lakehouse.scratch import scratch_folder
from digital_finance.lakehouse.storage import Location


def rebuild(
    root: Location, step: JoinGold, batch_id: int, databases: Databases | None = None
) -> tuple[int, int]:
    """Overwrite gold; returns (rows written or -1 when already done, holdings without stock).
    `databases`: the runner's, to borrow a DuckDB database from (else one is opened)."""
    holdings = delta_io.open_table(root, step.holdings)
    stocks = delta_io.open_table(root, step.stocks)
    with scratch_folder(root, f"gold-{batch_id}") as temp:
        # a join larger than memory spills there, not into a `.tmp` of the current directory
        if databases is not None:
            with databases.lend(temp) as con:
                return _rebuild(root, step, batch_id, holdings, stocks, con)
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET temp_directory = ?", [str(temp)])
            return _rebuild(root, step, batch_id, holdings, stocks, con)
        finally:
            con.close()


def _rebuild(
    root: Location,
    step: JoinGold,
    batch_id: int,
    holdings: DeltaTable | None,
    stocks: DeltaTable | None,
    con: duckdb.DuckDBPyConnection,
) -> tuple[int, int]:
    if holdings is None or stocks is None:
        return (-1 if delta_io.committed_batch(root, step.table) >= batch_id else 0), 0
    if not delta_io.table_rows(holdings):
        # no holdings, so no gold row, whatever the stocks (a stream of quotes alone): only
        # the batch is recorded, when gold is empty already
        gold = delta_io.open_table(root, step.table)
        if gold is not None and not delta_io.table_rows(gold):
            if (gold.transaction_version(APP_ID) or 0) >= batch_id:
                return -1, 0
            delta_io.commit_actions(gold, [], batch_id, "append")
            return 0, 0
    for name, table in (("h", holdings), ("s", stocks)):
        if delta_io.parquet_scan(con, name, table) is None:
            con.register(name, delta_io.arrow_dataset(table))
    try:
        on = ident(step.on)
        select = ", ".join(
            f"s.{ident(c)}" if c in step.from_stocks else f"h.{ident(c)}" for c in step.columns
        )
        (row,) = con.execute(
            f"SELECT count(*) FROM h WHERE NOT EXISTS (SELECT 1 FROM s WHERE s.{on} = h.{on})"
        ).fetchall()
        orphans = int(row[0])
        if delta_io.committed_batch(root, step.table) >= batch_id:
            return -1, orphans
        joined = (
            f"SELECT {select}, {batch_id}::BIGINT AS _batch_id FROM h JOIN s ON h.{on} = s.{on}"
        )
        rows = delta_io.write_query(root, step.table, con, joined, batch_id, "overwrite")
        return rows, orphans
    finally:
        for name in ("h", "s"):  # a borrowed database goes back without them
            with contextlib.suppress(duckdb.Error):
                con.unregister(name)
