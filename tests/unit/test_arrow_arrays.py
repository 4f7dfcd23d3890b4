"""Arrays built from buffers equal what `pyarrow.array` builds, and a run imports no pandas."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from digital_finance.arrow_arrays import (
    all_true,
    bool_array,
    bool_bytes,
    constant_int32,
    int_array,
    large_strings,
    table_from_rows,
)
from digital_finance.lakehouse.system_rows import RUNS_SCHEMA


def test_arrays_equal_pyarrow_array() -> None:
    assert int_array([3, -1, 2**40], pa.int64()).equals(pa.array([3, -1, 2**40], pa.int64()))
    assert int_array(np.arange(5), pa.int32()).equals(pa.array(range(5), pa.int32()))
    assert constant_int32(7, 3).equals(pa.array([7, 7, 7], pa.int32()))
    flags = [True, False, True, True, False, False, True, True, True]
    assert bool_array(flags).equals(pa.array(flags))
    assert all_true(9).equals(pa.array([True] * 9))
    assert all_true(0).equals(pa.array([], pa.bool_()))
    texts = ["", "a", "Zürich", "日本", '{"a": 1}']
    assert large_strings(texts).equals(pa.array(texts, pa.large_string()))


def test_bool_bytes_follows_offsets() -> None:
    flags = pa.array([True, False, True, True, False, True, True, True, True, False])
    assert bool_bytes(pa.array([True] * 20)) is None
    sliced = flags.slice(3, 6)
    got = bool_bytes(sliced)
    assert got is not None
    assert got.tolist() == [1, 0, 1, 1, 1, 1]


def test_table_from_rows_types_exactly() -> None:
    started = datetime(2026, 12, 2, 1, 2, 3, 123456, tzinfo=UTC)
    row = {
        "run_id": "r", "batch_id": 2, "engine": "embedded", "status": "failed",
        "started_at": started.isoformat(), "finished_at": started.isoformat(),
        "source_tz": "UTC", "files": 3, "resumed": True,
        "counts": [{"name": "records.stocks", "value": 10}],
        "rules": [{"dataset": "stocks", "rule": "r1", "action": "warn", "failures": 1}],
        "integrity_warnings": 0, "error": 'a "quoted" message',
    }  # fmt: skip
    table = table_from_rows([row], RUNS_SCHEMA)
    assert table.schema.equals(RUNS_SCHEMA)
    got = table.to_pylist()[0]
    assert got["started_at"] == started
    assert got["rules"] == row["rules"]
    assert got["error"] == row["error"]
    assert table_from_rows([], RUNS_SCHEMA).num_rows == 0


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="pandas is not installed")
def test_a_run_imports_no_pandas_and_no_pyarrow_compute(tmp_path: Path) -> None:
    """pyarrow imports pandas on its first `pyarrow.array`, and pyarrow.compute (80 ms with
    the interpreter held) on a cast or a filter; the embedded run must call none of them, a
    blank line (dropped from bronze) included."""
    stocks = tmp_path / "stocks.jsonl"
    stocks.write_text(
        '{"stock_id": 1, "company_id": 2, "symbol": "A", "price": 1.5, "timestamp": 1700000000}\n'
        "\n"
        "not json\n"
    )
    funds = tmp_path / "funds.json"
    funds.write_text(
        '[{"fund_id": "F", "company_id": 2, "holding_weight": 1, "nav": 2, "as_of": 1700000000}]'
    )
    script = (
        "import sys\n"
        "from digital_finance.cli.main import app\n"
        f"app(args=['run', '--stocks', {str(stocks)!r}, '--funds', {str(funds)!r}, "
        f"'--output', {str(tmp_path / 'lake')!r}], standalone_mode=False)\n"
        "print('PANDAS', 'pandas' in sys.modules)\n"
        "print('COMPUTE', 'pyarrow.compute' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "PANDAS False" in done.stdout
    assert "COMPUTE False" in done.stdout
    bronze = DeltaTable(tmp_path / "lake" / "bronze" / "stocks").to_pyarrow_table()
    assert sorted(bronze.column("line_number").to_pylist()) == [1, 3]  # line 2 was blank
