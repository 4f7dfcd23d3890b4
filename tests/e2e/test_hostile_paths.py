"""Paths with quotes, backslashes, semicolons, newlines, glob characters and Unicode go
through every command unchanged: no path is ever pasted into SQL text."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from deltalake import DeltaTable
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from digital_finance.lakehouse.storage import UNADDRESSABLE
from tests.conftest import cli

pytestmark = pytest.mark.slow

NASTY = "'\"\\;\n\t $%{}[]*?-=,()`&|<>#!~éß雪💹\u202e" + "abcXYZ019"


def _segments(alphabet: str) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=1, max_size=10).filter(
        lambda s: s not in (".", "..") and not s.startswith((".", "_"))
    )


segment = _segments(NASTY)  # input files may be named anything
# the lakehouse's folder: anything delta-rs can address, or anything at all (then refused)
lake_segment = st.one_of(_segments("".join(c for c in NASTY if c not in UNADDRESSABLE)), segment)
STOCKS = (
    '{"stock_id": 1, "company_id": 7, "symbol": "AAA", "price": "1.5", '
    '"timestamp": "2024-03-15T14:30:00Z"}\n'
    '{"stock_id": 2, "company_id": 8, "symbol": "b@d", "price": 2, '
    '"timestamp": "2024-03-15T14:30:00Z"}\n'
)
FUNDS = (
    '{"fund_id": "F1", "company_id": 7, "holding_weight": "2.5", "nav": "10", '
    '"as_of": "2024-03-15T00:00:00Z"}\n'
)


def _ok(*args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, (args, result.output)
    return str(result.output)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(folder="a'b\"c;(x)", lake_name=" é雪💹\u202e$`{}", stocks_name="x\n\\'[*?]",
         funds_name="%#|\t;--")  # fmt: skip
# DuckDB expands a `*` in the lakehouse's path and fails on a sibling named with a backslash
@example(folder="0", lake_name="*", stocks_name="s", funds_name="\\")
@given(folder=lake_segment, lake_name=lake_segment, stocks_name=segment, funds_name=segment)
def test_every_command_takes_any_path(
    folder: str, lake_name: str, stocks_name: str, funds_name: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / folder
        base.mkdir()
        stocks = base / f"{stocks_name}.jsonl"
        funds = base / f"{funds_name}-funds.json"
        stocks.write_text(STOCKS, encoding="utf-8")
        funds.write_text(FUNDS, encoding="utf-8")
        lake = base / f"lake{lake_name}"
        if any(c in UNADDRESSABLE for c in str(lake)):
            # delta-rs cannot address such a folder: refused up front, nothing written
            for args in (["run", "--stocks", str(stocks)], ["tables"], ["query", "SELECT 1"]):
                result = cli(*args, "--output", str(lake))
                assert result.exit_code == 2, result.output
                assert "cannot address" in " ".join(result.output.split())
            assert not lake.exists()
            return

        _ok("run", "--stocks", str(stocks), "--funds", str(funds), "--output", str(lake),
            "--format", "csv")  # fmt: skip
        bronze = DeltaTable(str(lake / "bronze" / "stocks")).to_pyarrow_table()
        assert set(bronze.column("source_file").to_pylist()) == {str(stocks.resolve())}
        silver = DeltaTable(str(lake / "silver" / "stocks")).to_pyarrow_table()
        assert silver.column("stock_id").to_pylist() == [1]
        quarantined = DeltaTable(str(lake / "quarantine" / "stocks")).to_pyarrow_table()
        assert quarantined.column("reason").to_pylist() == ["invalid_symbol"]
        gold = DeltaTable(str(lake / "gold" / "stock_fund_holdings")).to_pyarrow_table()
        assert gold.num_rows == 1
        assert list((lake / "export").iterdir())  # the csv export went to the same folder

        # a second run of the same files reads nothing again
        again = _ok("run", "--stocks", str(stocks), "--output", str(lake))
        assert "nothing new" in again or "skipped 1" in again

        assert "silver/stocks" in _ok("tables", "--output", str(lake))
        out = base / f"{lake_name}.csv"
        _ok("query", "SELECT stock_id, _source_file FROM silver.stocks", "--output", str(lake),
            "--out", str(out))  # fmt: skip
        assert str(stocks.resolve()).replace('"', '""') in out.read_text(encoding="utf-8")
        refused = cli("batch", "abandon", "99", "--output", str(lake))
        assert refused.exit_code == 2 and "no batch 99" in refused.output


@pytest.mark.parametrize("char", list(UNADDRESSABLE))
def test_a_lakehouse_path_delta_rs_cannot_address_is_refused(tmp_path: Path, char: str) -> None:
    stocks = tmp_path / "s.jsonl"
    stocks.write_text(STOCKS, encoding="utf-8")
    lake = tmp_path / f"lake{char}x"
    result = cli("run", "--stocks", str(stocks), "--output", str(lake))
    assert result.exit_code == 2, result.output
    assert "cannot address" in " ".join(result.output.split()) and not lake.exists()
