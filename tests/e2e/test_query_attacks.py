"""`query` runs one read-only SELECT over the tables: every attack is refused, nothing changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import REPO, cli, cli_ok

# {lake} is the lakehouse folder. Each line is something `query` once ran, or something
# DuckDB's documentation offers for reaching files, the network, extensions or settings.
ATTACKS = [
    "COPY (SELECT 1) TO '{lake}' (FORMAT parquet, OVERWRITE true)",
    "COPY silver.stocks TO '{lake}/silver/stocks/_delta_log/00000000000000000000.json'",
    "COPY (SELECT 1 AS a) TO '/tmp/df-attack.csv'",
    "COPY silver.stocks FROM '{lake}/bronze/stocks'",
    "ATTACH '{lake}/evil.duckdb' AS evil",
    "DETACH memory",
    "CREATE TABLE t AS SELECT 1",
    "CREATE OR REPLACE VIEW silver.stocks AS SELECT 1",
    "DROP VIEW silver.stocks",
    "DELETE FROM silver.stocks",
    "UPDATE silver.stocks SET price = 0",
    "INSERT INTO silver.stocks SELECT * FROM silver.stocks",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "PRAGMA database_list",
    "CALL duckdb_settings()",
    "EXPORT DATABASE '{lake}/export'",
    "IMPORT DATABASE '{lake}'",
    "CHECKPOINT",
    "VACUUM",
    "USE silver",
    "SELECT 1; COPY (SELECT 1) TO '{lake}/x.csv'",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_json_auto('{lake}/_system/commit.lock')",
    "SELECT * FROM read_parquet('{lake}/silver/stocks/*.parquet')",
    "SELECT * FROM '{lake}/silver/stocks/_delta_log/00000000000000000000.json'",
    "SELECT * FROM glob('{lake}/**')",
    "SELECT * FROM 'https://example.com/data.csv'",
    "SELECT * FROM sqlite_scan('{lake}/x.db', 't')",
    "SELECT * FROM query('SELECT * FROM read_text(''/etc/passwd'')')",
    "WITH x AS (SELECT 1) SELECT * FROM read_text('/etc/shadow')",
    "SELECT 1 /* unterminated",
]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under the lakehouse with the hash of its bytes (folders included, as '')."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("attacked") / "lake"
    data = REPO / "data"
    cli_ok("run", "--stocks", str(data / "stocks.json"), "--funds",
           str(data / "mutual_funds.json"), "--output", str(root))  # fmt: skip
    return root


def test_the_attack_list_is_long_enough() -> None:
    assert len(ATTACKS) >= 15


@pytest.mark.parametrize("attack", ATTACKS)
def test_each_attack_is_refused_and_changes_nothing(lake: Path, attack: str) -> None:
    before = _snapshot(lake)
    sql = attack.format(lake=lake)
    result = cli("query", sql, "--output", str(lake))
    assert result.exit_code == 2, result.output
    assert "error:" in result.output
    assert _snapshot(lake) == before
    assert not Path("/tmp/df-attack.csv").exists()


def test_a_select_still_reads_every_table(lake: Path) -> None:
    out = cli_ok("query", "SELECT count(*) AS n FROM silver.stocks", "--output", str(lake))
    assert "3" in out
    out = cli_ok(
        "query",
        "SELECT s.symbol FROM gold.stock_fund_holdings g JOIN silver.stocks s USING (stock_id) "
        "ORDER BY 1 LIMIT 1",
        "--output",
        str(lake),
    )
    assert "│" in out


def test_out_inside_the_lakehouse_is_refused(lake: Path) -> None:
    before = _snapshot(lake)
    target = lake / "silver" / "stocks" / "evil.parquet"
    result = cli("query", "SELECT 1 AS a", "--output", str(lake), "--out", str(target))
    assert result.exit_code == 2
    assert "inside the lakehouse" in result.output
    assert _snapshot(lake) == before


def test_a_long_query_is_interrupted(lake: Path) -> None:
    from digital_finance.lakehouse.read_only import (
        QueryRefusedError,
        read_only_connection,
        run_select,
    )
    from digital_finance.lakehouse.storage import location

    slow = "SELECT count(*) FROM range(100000000000) a, range(1000) b"
    with (
        read_only_connection(location(str(lake))) as (con, names),
        pytest.raises(QueryRefusedError, match="longer than"),
    ):
        run_select(con, slow, names, timeout_seconds=0.5)


def test_the_library_query_is_the_same_lock(lake: Path) -> None:
    from digital_finance import Lakehouse, QueryRefusedError

    house = Lakehouse(str(lake))
    assert house.query("SELECT count(*) AS n FROM silver.stocks").column("n").to_pylist() == [3]
    before = _snapshot(lake)
    for attack in ATTACKS:
        with pytest.raises(QueryRefusedError):
            house.query(attack.format(lake=lake))
    assert _snapshot(lake) == before
