"""`digital-finance stream --source folder`: the landing-folder pattern (Auto Loader's)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, rows

pytestmark = pytest.mark.slow


def _stream(landing: Path, lake: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # the files are complete when copied: no need to wait for them to settle
    env = {**os.environ, "DIGITAL_FINANCE_STREAM__FOLDER_SETTLE_SECONDS": "0"}
    return subprocess.run(
        [sys.executable, "-m", "digital_finance", "stream", "--source", "folder", "--path",
         str(landing), "--output", str(lake), *extra],
        capture_output=True, text=True, cwd=REPO, timeout=300, env=env,
    )  # fmt: skip


def test_each_file_once_temporary_names_skipped_and_redrops_ignored(tmp_path: Path) -> None:
    from digital_finance.generate import generate

    data = tmp_path / "generated"
    generate(data, 6_000, 600, seed=9)
    landing = tmp_path / "landing"
    (landing / "stocks").mkdir(parents=True)
    (landing / "mutual_funds").mkdir()
    stock_files = sorted((data / "stocks").iterdir())
    # a file still being written goes under a temporary name, then is renamed into place
    shutil.copy(stock_files[0], landing / "stocks" / f"_{stock_files[0].name}")
    shutil.copy(stock_files[1], landing / "stocks" / f".{stock_files[1].name}.tmp")
    lake = tmp_path / "lake"
    first = _stream(landing, lake, "--once")
    assert first.returncode == 0, first.stderr
    assert not (lake / "bronze" / "stocks").exists(), "a temporary name was read"
    # many files in one trigger: one batch
    for f in stock_files:
        shutil.copy(f, landing / "stocks" / f.name)
    for f in sorted((data / "mutual_funds").iterdir()):
        shutil.copy(f, landing / "mutual_funds" / f.name)
    second = _stream(landing, lake, "--once")
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("batch ") == 1, second.stderr
    # the same bytes dropped again under another name: not ingested twice
    shutil.copy(stock_files[2], landing / "stocks" / "again.jsonl")
    third = _stream(landing, lake, "--once")
    assert third.returncode == 0, third.stderr
    reference = tmp_path / "reference"
    ran = subprocess.run(
        [sys.executable, "-m", "digital_finance", "run", "--stocks", str(data / "stocks"),
         "--funds", str(data / "mutual_funds"), "--output", str(reference)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    for table in ("silver/stocks", "silver/mutual_funds", "gold/stock_fund_holdings"):
        drop = {"_source_file"}
        assert rows(lake, table, drop) == rows(reference, table, drop), table
    assert len(rows(lake, "bronze/stocks")) == len(rows(reference, "bronze/stocks"))


def test_a_running_folder_stream_takes_new_files_and_stops_on_sigterm(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "stocks").mkdir(parents=True)
    lake = tmp_path / "lake"
    process = subprocess.Popen(
        [sys.executable, "-m", "digital_finance", "stream", "--source", "folder", "--path",
         str(landing), "--output", str(lake), "--trigger", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env={**os.environ},
    )  # fmt: skip
    try:
        record = '{"stock_id": 1, "symbol": "ACME", "company_id": 7, "price": "10.50", "currency": "USD", "exchange": "NYSE", "volume": 5, "timestamp": "2024-03-15T14:30:00Z"}\n'
        temp = landing / "stocks" / ".drop.tmp"
        temp.write_text(record)
        os.replace(temp, landing / "stocks" / "drop-1.jsonl")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (lake / "silver" / "stocks").exists():
            time.sleep(0.2)
        assert (lake / "silver" / "stocks").exists()
        # a file written in place is left alone until it settled (1 s untouched)
        growing = landing / "stocks" / "drop-2.jsonl"
        growing.write_text(record.replace('"stock_id": 1,', '"stock_id": 2,')[:40])
        time.sleep(0.5)
        assert len(rows(lake, "bronze/stocks")) == 1, "a file being written was read"
        growing.write_text(record.replace('"stock_id": 1,', '"stock_id": 2,'))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(rows(lake, "bronze/stocks")) < 2:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert b"stopped" in err
    finally:
        if process.poll() is None:
            process.kill()
    assert len(rows(lake, "bronze/stocks")) == 2
    assert len(rows(lake, "silver/stocks")) == 2, rows(lake, "quarantine/stocks")
