"""The fast contract paths on Arrow chunks (used by the Spark workers) equal the reference:
the compiled query, and the native kernel where it is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from digital_finance import native
from digital_finance.contract.arrow_records import check_lines
from digital_finance.contract.compiled_check import check_lines_compiled, check_lines_fast
from digital_finance.contract.schemas import FUNDS, STOCKS, DatasetSpec
from tests.spark.traps import trap_lines


def _chunk(lines: list[str]) -> pa.Table:
    utf8 = [not line.startswith("\\xff") for line in lines]
    return pa.table(
        {
            "line_number": pa.array(range(1, len(lines) + 1), pa.int64()),
            "raw": pa.array(lines, pa.large_string()),
            "line_reason": pa.array([None if ok else "invalid_utf8" for ok in utf8], pa.string()),
        }
    )


@pytest.mark.parametrize("spec", [STOCKS, FUNDS], ids=lambda s: s.name)
@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata"])
@pytest.mark.parametrize("path", ["compiled", "fast"])
def test_every_trap_gets_the_reference_verdict(spec: DatasetSpec, tz: str, path: str) -> None:
    if path == "fast" and native.kernel() is None:
        pytest.skip(native.INSTALL_HINT)  # `make setup` builds it: CI runs this
    lines = [*trap_lines(spec), "\\xff not utf-8"]
    chunk = _chunk(lines)
    expected = check_lines(chunk, 7, spec, tz)
    check = check_lines_compiled if path == "compiled" else check_lines_fast
    got = check(chunk, 7, spec, tz)
    assert got.schema == expected.schema
    mine, theirs = got.to_pylist(), expected.to_pylist()
    for row in mine + theirs:
        row.pop("by_reference")  # how a verdict was reached, not the verdict
    assert mine == theirs
    assert not all(got.column("by_reference").to_pylist())  # the fast path decided most
    assert any(got.column("by_reference").to_pylist())  # and handed the unsure ones over


def test_a_chunk_of_blank_lines_gives_an_empty_batch() -> None:
    got = check_lines_compiled(_chunk(["", "  "]), 0, STOCKS, "UTC")
    assert got.num_rows == 0 and got.schema == check_lines(_chunk([]), 0, STOCKS, "UTC").schema


def test_checking_a_file_imports_no_pandas(tmp_path: Path) -> None:
    """What a Spark worker runs per chunk (`FileSource.read`, `check_lines_fast`) leaves
    pandas unimported: its import cost each cold worker about half a second."""
    data = tmp_path / "s.jsonl"
    data.write_text(
        '{"stock_id": 1, "company_id": 7, "symbol": "AAA", "price": "1.5", '
        '"timestamp": "2024-03-15T14:30:00Z"}\n\n{"stock_id": 2}\nnot json\n'
    )
    script = f"""
import sys
from digital_finance.contract.compiled_check import check_lines_fast
from digital_finance.definition.pipeline import STOCKS
from digital_finance.runs.plan import PlannedFile
from digital_finance.sources.base import FileSource
from digital_finance.sources.discovery import InputFile
from digital_finance.sources.input_limits import InputLimits

path = {str(data)!r}
part = PlannedFile("stocks", 0, InputFile(path, {data.stat().st_size}, 0), 0, 1)
rows = sum(check_lines_fast(c.table, 0, STOCKS, "UTC").num_rows
           for c in FileSource(1 << 20, InputLimits()).read(part))
print(rows, "pandas" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "False"]
