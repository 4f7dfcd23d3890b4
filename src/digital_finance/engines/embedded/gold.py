"""Rebuild gold `stock_fund_holdings` from the silver tables.

Gold is recomputed from silver as a whole, so it is exactly the join of the current silver
tables however many batches built them. At the sizes this engine is for, the join is cheap
next to parsing; an incremental gold is a later optimisation.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
from deltalake import DeltaTable

from digital_finance.contract.compiled_sql import ident
from digital_finance.definition.steps import JoinGold
from digital_finance.engines.embedded import delta_io
from digital_finance.lakehouse.scratch import scratch_folder
from digital_finance.lakehouse.storage import Location


def rebuild(root: Location, step: JoinGold, batch_id: int) -> tuple[int, int]:
    """Overwrite gold; returns (rows written or -1 when already done, holdings without stock)."""
    holdings = delta_io.open_table(root, step.holdings)
    stocks = delta_io.open_table(root, step.stocks)
    with scratch_folder(root, f"gold-{batch_id}") as temp:
        return _rebuild(root, step, batch_id, holdings, stocks, temp)


def _rebuild(
    root: Location,
    step: JoinGold,
    batch_id: int,
    holdings: DeltaTable | None,
    stocks: DeltaTable | None,
    temp: Path,
) -> tuple[int, int]:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    # a join larger than memory spills here, not into a `.tmp` of the current directory
    con.execute("SET temp_directory = ?", [str(temp)])
    try:
        if holdings is None or stocks is None:
            return (-1 if delta_io.committed_batch(root, step.table) >= batch_id else 0), 0
        for name, table in (("h", holdings), ("s", stocks)):
            if delta_io.parquet_scan(con, name, table) is None:
                con.register(name, table.to_pyarrow_dataset())
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
        con.close()
