"""The batch's winner per key: the packed order and the struct order pick the same rows.

`StagedDataset.latest` compares (event time, file, line) as one 128-bit integer where they
fit in it. These tests put rows straight into the staging table (times before and after
1970, ties on the time, on the file, lines far apart) and hold the packed order's winners
to the struct's, the contract's own statement of the order.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from digital_finance.contract.schemas import FUNDS, STOCKS, DatasetSpec
from digital_finance.definition.rules import LatestWins
from digital_finance.engines.embedded.databases import connect
from digital_finance.engines.embedded.staging import StagedDataset

STOCK_RULE = LatestWins(key=("stock_id",), event_time="event_time")
FUND_RULE = LatestWins(key=("fund_id", "company_id"), event_time="as_of")


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(tmp_path / "spill", "256MB", 2)
    yield con
    con.close()


def _insert(
    con: duckdb.DuckDBPyConnection,
    spec: DatasetSpec,
    rule: LatestWins,
    rows: Sequence[tuple[object, ...]],
) -> None:
    """Rows of (key..., event time in µs since 1970, file ordinal, line number)."""
    names = [*rule.key, "_us", "file_ordinal", "line_number"]
    columns = {n: [r[i] for r in rows] for i, n in enumerate(names)}
    con.register("_rows", pa.table(columns))
    keys = ", ".join(rule.key)
    con.execute(
        f"INSERT INTO parsed_{spec.name} ({keys}, {rule.event_time}, file_ordinal, line_number, "
        f"reasons) SELECT {keys}, make_timestamp(_us), file_ordinal, line_number, "
        "[]::VARCHAR[] FROM _rows"
    )
    con.unregister("_rows")


def _winners(staged: StagedDataset, rule: LatestWins, order: str) -> set[tuple[object, ...]]:
    keys = ", ".join(rule.key)
    rows = staged.con.execute(
        f"SELECT {keys}, file_ordinal, line_number FROM parsed_{staged.spec.name} "
        f"WHERE rowid IN (SELECT arg_max(_row, {order}) FROM checked_{staged.spec.name} "
        f"GROUP BY {keys})"
    ).fetchall()
    return set(rows)


def _latest_winners(staged: StagedDataset, rule: LatestWins) -> set[tuple[object, ...]]:
    keys = ", ".join(rule.key)
    sql = staged.latest(1, "2026-01-01T00:00:00+00:00", rule)
    lineage = "_line_number"
    rows = staged.con.execute(f"SELECT {keys}, _source_file, {lineage} FROM ({sql})").fetchall()
    files = dict(
        staged.con.execute(
            f"SELECT source_file, file_ordinal FROM files_{staged.spec.name}"
        ).fetchall()
    )
    return {(*r[:-2], files[r[-2]], r[-1]) for r in rows}


def _files(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, ordinals: range) -> None:
    for o in ordinals:
        con.execute(f"INSERT INTO files_{spec.name} VALUES (?, ?, 'file')", [o, f"f{o}.json"])


def test_the_packed_order_picks_the_struct_orders_winners(con: duckdb.DuckDBPyConnection) -> None:
    rng = random.Random(7)
    staged = StagedDataset(con, STOCKS, "UTC", ())
    _files(con, STOCKS, range(4))
    times = [-86_400_000_000 * 365 * 30, -1, 0, 1, 1_700_000_000_000_000, 1_700_000_000_000_001]
    rows = [
        (rng.randrange(40), rng.choice(times), rng.randrange(4), rng.randrange(1, 2**40 - 1))
        for _ in range(3_000)
    ]
    rows += [(999, 5, 2, 7), (999, 5, 3, 1), (999, 5, 2, 9)]  # a tie on the time: file 3 wins
    _insert(con, STOCKS, STOCK_RULE, rows)
    packed = staged._winner_order(STOCK_RULE)
    assert "HUGEINT" in packed, "these rows fit: the packed order is the one used"
    struct = "(event_time, file_ordinal, line_number)"
    assert _winners(staged, STOCK_RULE, packed) == _winners(staged, STOCK_RULE, struct)
    assert _latest_winners(staged, STOCK_RULE) == _winners(staged, STOCK_RULE, struct)
    assert (999, 3, 1) in _winners(staged, STOCK_RULE, packed)


def test_a_line_beyond_the_packed_bits_keeps_the_struct(con: duckdb.DuckDBPyConnection) -> None:
    staged = StagedDataset(con, FUNDS, "UTC", ())
    _files(con, FUNDS, range(2))
    far = 2**40 + 5  # a stream's offset can be this large
    _insert(
        con, FUNDS, FUND_RULE, [("F1", 7, 10, 0, far), ("F1", 7, 10, 1, 3), ("F1", 8, 10, 1, far)]
    )
    order = staged._winner_order(FUND_RULE)
    assert "HUGEINT" not in order
    assert _latest_winners(staged, FUND_RULE) == {("F1", 7, 1, 3), ("F1", 8, 1, far)}


def test_an_empty_batch_keeps_the_struct(con: duckdb.DuckDBPyConnection) -> None:
    staged = StagedDataset(con, STOCKS, "UTC", ())
    assert "HUGEINT" not in staged._winner_order(STOCK_RULE)
    assert con.execute(
        f"SELECT count(*) FROM ({staged.latest(1, '2026-01-01', STOCK_RULE)})"
    ).fetchall() == [(0,)]


def test_a_record_without_a_line_number_keeps_the_struct(con: duckdb.DuckDBPyConnection) -> None:
    staged = StagedDataset(con, STOCKS, "UTC", ())
    _files(con, STOCKS, range(1))
    _insert(con, STOCKS, STOCK_RULE, [(1, 5, 0, 3), (1, 5, 0, None), (2, 5, 0, 4)])
    assert "HUGEINT" not in staged._winner_order(STOCK_RULE)
