"""Hand-made nasty files through the CLI, checked row for row against the contract."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from tests.conftest import cli, cli_ok, rows, versions

STOCKS_NDJSON = (
    "\ufeff"  # a byte-order mark at the start
    '{"stock_id": 1, "company_id": 10, "symbol": " aapl ", "price": 189.250000, "volume": 100, "exchange": "NASDAQ", "timestamp": "2024-03-15T14:30:00Z"}\r\n'
    "\r\n"  # blank line: ignored, but counted for line numbers
    '{"stock_id": "2", "company_id": "20", "symbol": "brk.b", "price": "999999999999.999999", "currency": "usd", "timestamp": "2024-03-15T20:00:00.250+05:30", "desk": "NY-3"}\r\n'
    '{"stock_id": 1, "company_id": 10, "symbol": "AAPL", "price": 190.5, "timestamp": 1710513900}\r\n'
    '{"stock_id": 3, "company_id": 30, "symbol": "SAP", "price": 1.7521e2, "exchange": "Börse Frankfurt", "currency": "EUR", "timestamp": "2024-03-15 16:00:00"}\r\n'
    '{"stock_id": 4, "company_id": 40, "symbol": "OOPS", "price": 12.3456789, "timestamp": "2024-03-15T14:30:00Z"}\r\n'
    '{"stock_id": 5, "company_id": 50, "symbol": "X", "price": 1, "timestamp": "2024-02-30T10:00:00Z"}\r\n'
    "this is not json\r\n"
    '["an", "array"]\r\n'
    '{"stock_id": true, "company_id": 12.0, "symbol": "A", "price": 1, "timestamp": 1}\r\n'
    '{"stock_id": 6, "stock_id": 7, "company_id": 1, "symbol": "D", "price": 1, "timestamp": 1}\r\n'
)
# the later file: a tie on event time for stock 3 (this one wins), and a late-arriving old one
STOCKS_ARRAY = """[
  {"stock_id": 3, "company_id": 30, "symbol": "SAP", "price": 176.00, "timestamp": "2024-03-15T16:00:00Z"},
  {"stock_id": 2, "company_id": 20, "symbol": "BRK.B", "price": 1.5, "timestamp": "2024-03-15T14:00:00Z"},
  {"stock_id": 8, "company_id": 80, "symbol": "NEW", "price": 2, "volume": "0", "timestamp": 1710513000000}
]
"""
FUNDS = (
    '{"fund_id": "F1", "fund_name": "Growth", "company_id": 10, "holding_weight": 6.25, "nav": 118.42, "as_of": "2024-03-15T00:00:00Z"}\n'
    '{"fund_id": 4021, "company_id": 30, "holding_weight": "100", "nav": "22.1", "as_of": 1710460800}\n'
    '{"fund_id": "F1", "fund_name": "Growth", "company_id": 10, "holding_weight": 6.5, "nav": 119, "as_of": "2024-03-16T00:00:00Z"}\n'
    '{"fund_id": "F2", "company_id": 999, "holding_weight": 1, "nav": 10, "as_of": "2024-03-15T00:00:00Z"}\n'
    '{"fund_id": "  ", "company_id": 10, "holding_weight": 1, "nav": 10, "as_of": "2024-03-15T00:00:00Z"}\n'
    '{"fund_id": "F3", "company_id": 10, "holding_weight": 100.5, "nav": 10, "as_of": "2024-03-15T00:00:00Z"}\n'
)
NOT_UTF8 = b'{"fund_id": "\xff\xfe"}\n'  # line 7: bytes that are not UTF-8


def _write_inputs(tmp: Path) -> tuple[Path, Path]:
    stocks = tmp / "in" / "stocks"
    funds = tmp / "in" / "funds"
    stocks.mkdir(parents=True)
    funds.mkdir(parents=True)
    (stocks / "a.jsonl").write_bytes(STOCKS_NDJSON.encode("utf-8"))
    (stocks / "b.json").write_text(STOCKS_ARRAY, encoding="utf-8")
    with gzip.open(funds / "f.ndjson.gz", "wb") as fh:
        fh.write(FUNDS.encode("utf-8") + NOT_UTF8)
    return stocks, funds


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_nasty_files_match_the_contract_row_for_row(tmp_path: Path) -> None:
    stocks, funds = _write_inputs(tmp_path)
    out = tmp_path / "lake"
    cli_ok("run", "--stocks", str(stocks), "--funds", str(funds), "--output", str(out),
           "--source-tz", "Europe/Berlin")  # fmt: skip

    silver = {r["stock_id"]: r for r in rows(out, "silver/stocks")}
    assert sorted(silver) == [1, 2, 3, 8]
    assert silver[1]["price"] == Decimal("190.500000")  # later event time wins
    assert silver[1]["event_time"] == _utc(2024, 3, 15, 14, 45)
    assert silver[1]["symbol"] == "AAPL"
    assert silver[2]["price"] == Decimal("999999999999.999999")  # exact at full precision
    assert silver[2]["event_time"] == _utc(2024, 3, 15, 14, 30, 0, 250000)
    assert silver[2]["currency"] == "USD"
    assert json.loads(silver[2]["_rescued"]) == {"desk": "NY-3"}
    # stock 3: naive Berlin 16:00 is 15:00 UTC in March; the array file's 16:00Z is later
    assert silver[3]["price"] == Decimal("176.000000")
    assert silver[3]["event_time"] == _utc(2024, 3, 15, 16, 0)
    assert silver[8]["volume"] == 0
    assert silver[8]["event_time"] == _utc(2024, 3, 15, 14, 30)

    quarantine = {(Path(r["source_file"]).name, r["line_number"]): r["reason"]
                  for r in rows(out, "quarantine/stocks")}  # fmt: skip
    assert quarantine == {
        ("a.jsonl", 6): "invalid_price",
        ("a.jsonl", 7): "invalid_timestamp",
        ("a.jsonl", 8): "invalid_json",
        ("a.jsonl", 9): "not_an_object",
        ("a.jsonl", 10): "invalid_stock_id",
        ("a.jsonl", 11): "duplicate_key",
    }
    raw = {r["line_number"]: r["raw"] for r in rows(out, "quarantine/stocks")}
    assert raw[8] == "this is not json"

    bronze = rows(out, "bronze/stocks")
    assert len(bronze) == 10 + 3  # every non-blank record, nothing dropped
    assert {(Path(r["source_file"]).name, r["line_number"]) for r in bronze} >= {
        ("b.json", 2),
        ("b.json", 4),
    }

    funds_q = {r["line_number"]: r["reason"] for r in rows(out, "quarantine/mutual_funds")}
    assert funds_q == {5: "invalid_fund_id", 6: "invalid_holding_weight", 7: "invalid_utf8"}
    funds_s = {(r["fund_id"], r["company_id"]): r for r in rows(out, "silver/mutual_funds")}
    assert set(funds_s) == {("F1", 10), ("4021", 30), ("F2", 999)}
    assert funds_s[("F1", 10)]["nav"] == Decimal("119.000000")
    assert funds_s[("4021", 30)]["holding_weight"] == Decimal("100.000000")

    gold = rows(out, "gold/stock_fund_holdings")
    assert {(r["fund_id"], r["stock_id"]) for r in gold} == {("F1", 1), ("4021", 3)}
    runs = rows(out, "_system/pipeline_runs")
    assert runs[0]["integrity_warnings"] == 1  # F2 holds company 999, which has no stock


def test_second_run_on_the_same_files_changes_no_table(tmp_path: Path) -> None:
    stocks, funds = _write_inputs(tmp_path)
    out = tmp_path / "lake"
    cli_ok("run", "--stocks", str(stocks), "--funds", str(funds), "--output", str(out))
    before = versions(out)
    text = cli_ok("run", "--stocks", str(stocks), "--funds", str(funds), "--output", str(out))
    assert "nothing new" in text
    assert versions(out) == before


def test_exports_escape_formulas_in_csv(tmp_path: Path) -> None:
    stocks = tmp_path / "s.jsonl"
    stocks.write_text(
        '{"stock_id": 1, "company_id": 1, "symbol": "A", "price": 1, "exchange": "=HYPERLINK(1)", '
        '"timestamp": "2024-03-15T14:30:00Z"}\n'
        '{"stock_id": 2, "company_id": 1, "symbol": "B", "price": 2, "exchange": "@SUM(A1)", '
        '"timestamp": "2024-03-15T14:30:00Z"}\n',
        encoding="utf-8",
    )
    out = tmp_path / "lake"
    cli_ok("run", "--stocks", str(stocks), "--output", str(out), "--format", "csv")
    text = (out / "export" / "silver_stocks.csv").read_text(encoding="utf-8")
    assert '"\'=HYPERLINK(1)"' in text
    assert '"\'@SUM(A1)"' in text
    cli_ok(
        "run", "--stocks", str(stocks), "--output", str(tmp_path / "lake2"), "--format", "parquet"
    )
    assert (tmp_path / "lake2" / "export" / "silver_stocks.parquet").stat().st_size > 0


def test_query_and_tables_commands(tmp_path: Path) -> None:
    stocks, funds = _write_inputs(tmp_path)
    out = tmp_path / "lake"
    cli_ok("run", "--stocks", str(stocks), "--funds", str(funds), "--output", str(out))
    listing = cli_ok("tables", "--output", str(out))
    assert "silver/stocks" in listing and "gold/stock_fund_holdings" in listing
    text = cli_ok("query", "SELECT count(*) AS n FROM silver.stocks", "--output", str(out))
    assert "4" in text
    target = tmp_path / "q.csv"
    cli_ok(
        "query",
        "SELECT stock_id, price FROM silver.stocks ORDER BY 1",
        "--output",
        str(out),
        "--out",
        str(target),
    )
    assert target.read_text().splitlines()[1:] == [
        "1,190.500000", "2,999999999999.999999", "3,176.000000", "8,2.000000",
    ]  # fmt: skip
    old = cli_ok(
        "query", "SELECT count(*) AS n FROM bronze.stocks", "--output", str(out), "--as-of", "0"
    )
    assert "13" in old
    bad = cli("query", "SELECT * FROM nowhere", "--output", str(out))
    assert bad.exit_code == 2 and "available tables" in bad.output


def test_errors_say_what_to_do(tmp_path: Path) -> None:
    missing = cli("run", "--stocks", str(tmp_path / "nope*.json"), "--output", str(tmp_path / "o"))
    assert missing.exit_code == 2 and "no file or folder matches" in missing.output
    tz = cli("run", "--stocks", str(tmp_path), "--source-tz", "Mars/Olympus")
    assert tz.exit_code == 2 and "unknown time zone" in tz.output


def test_seed_entry_point_transform_py_still_works(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "lake"
    done = subprocess.run(
        [sys.executable, "transform.py", "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    silver = rows(out, "silver/stocks")
    assert {r["stock_id"] for r in silver} == {1, 2, 3}  # data/stocks.json, stock 4 quarantined
