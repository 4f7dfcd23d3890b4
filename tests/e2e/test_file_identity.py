"""Files are known by content and position: touched, copied, appended and rewritten files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import DATA_TABLES, cli_ok, cli_process, rows, versions


def _lines(generated: Path) -> list[str]:
    """The NDJSON stock lines of the generated data (every trap included)."""
    out: list[str] = []
    for path in sorted((generated / "stocks").iterdir()):
        if path.name.endswith((".jsonl", ".ndjson")):
            out += path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    return out


def _run(stocks: Path, out: Path) -> str:
    return cli_ok("run", "--stocks", str(stocks), "--output", str(out))


@pytest.fixture
def lines(generated: Path) -> list[str]:
    found = _lines(generated)
    assert len(found) > 3_000
    return found


def _write(path: Path, lines: list[str]) -> None:
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape"))


def test_a_touched_file_is_not_ingested_again(lines: list[str], tmp_path: Path) -> None:
    path = tmp_path / "in" / "stocks.jsonl"
    path.parent.mkdir()
    _write(path, lines)
    out = tmp_path / "lake"
    _run(path, out)
    before = versions(out)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**10))
    assert "nothing new to ingest" in _run(path, out)
    copy = tmp_path / "in" / "copy.jsonl"
    shutil.copyfile(path, copy)
    said = _run(path.parent, out)
    assert "holds the same bytes as" in said and "nothing new to ingest" in said
    assert versions(out) == before


def test_appended_lines_are_all_that_a_second_run_reads(lines: list[str], tmp_path: Path) -> None:
    """Bronze gets each record once, and silver equals one run over the final file."""
    path = tmp_path / "in" / "stocks.jsonl"
    path.parent.mkdir()
    first, second = lines[: len(lines) // 2], lines[len(lines) // 2 :]
    _write(path, first)
    out = tmp_path / "lake"
    _run(path, out)
    _write(path, first + second)
    said = _run(path, out)
    assert "bytes appended since batch 1" in said
    once = tmp_path / "once"
    _run(path, once)
    for table in DATA_TABLES:
        if (once / table).exists():
            assert rows(out, table) == rows(once, table), table


def test_a_crash_while_ingesting_an_append_is_resumed_exactly(
    lines: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "in" / "stocks.jsonl"
    path.parent.mkdir()
    first, second = lines[:1000], lines[1000:]
    _write(path, first)
    out = tmp_path / "lake"
    _run(path, out)
    _write(path, first + second)
    args = ["run", "--stocks", str(path), "--output", str(out)]
    crashed = cli_process(*args, env={"DIGITAL_FINANCE_CRASH_AT": "before_silver_stocks"})
    assert crashed.returncode == 137, crashed.stderr
    with open(path, "a", encoding="utf-8") as f:  # more lines arrive meanwhile
        f.write('{"stock_id": 1, "company_id": 1, "symbol": "LATE", "price": 1, '
                '"timestamp": "2030-01-01T00:00:00Z"}\n')  # fmt: skip
    again = cli_process(*args)
    assert again.returncode == 0, again.stderr
    assert "resumed" in again.stdout
    once = tmp_path / "once"
    _run(path, once)
    for table in DATA_TABLES:
        if (once / table).exists():
            assert rows(out, table) == rows(once, table), table


def test_a_rewritten_file_is_read_whole_as_a_new_version(lines: list[str], tmp_path: Path) -> None:
    path = tmp_path / "in" / "stocks.jsonl"
    path.parent.mkdir()
    _write(path, lines[:500])
    out = tmp_path / "lake"
    _run(path, out)
    _write(path, lines[500:1000])
    said = _run(path, out)
    assert "is not an append: read whole" in said
    assert len(rows(out, "bronze/stocks")) == 1000
