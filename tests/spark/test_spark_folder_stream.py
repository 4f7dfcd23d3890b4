"""`stream --engine spark --source folder`: a landing folder through Structured Streaming's
file source and the Spark engine, handed over to and from the embedded stream."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from digital_finance import Lakehouse
from digital_finance.config import load_config
from digital_finance.engines.spark.folder_stream import SparkFolderStream
from digital_finance.streaming.loop import StreamOptions
from tests.streaming.compare import run_cli, table_differences

pytestmark = [pytest.mark.spark, pytest.mark.slow]

AN_HOUR_AGO = time.time() - 3600


def _drop(source: Path, target: Path) -> Path:
    """A file put into the landing folder, long settled."""
    shutil.copy(source, target)
    os.utime(target, (AN_HOUR_AGO, AN_HOUR_AGO))
    return target


def _embedded(landing: Path, lake: Path) -> str:
    done = run_cli(
        [sys.executable, "-m", "digital_finance", "stream", "--source", "folder",
         "--path", str(landing), "--output", str(lake), "--once"],
        env={"DIGITAL_FINANCE_STREAM__FOLDER_SETTLE_SECONDS": "0"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_a_landing_folder_taken_by_both_engines_in_turn_is_in_the_tables_once(
    spark: Any, tmp_path: Path
) -> None:
    from digital_finance.generate import generate

    data = tmp_path / "generated"
    generate(data, 4_000, 400, seed=13)
    stocks = sorted((data / "stocks").iterdir())
    funds = sorted((data / "mutual_funds").iterdir())
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    (landing / "stocks").mkdir(parents=True)
    (landing / "mutual_funds").mkdir()

    # the embedded stream takes the first stock files
    half = len(stocks) // 2
    for f in stocks[:half]:
        _drop(f, landing / "stocks" / f.name)
    _embedded(landing, lake)

    # the Spark stream takes the rest, the holdings, and a file grown by lines since; the
    # same bytes under a second name are not taken again, and a file modified a moment ago
    # waits for the next start
    for f in stocks[half:-1]:
        _drop(f, landing / "stocks" / f.name)
    for f in funds:
        _drop(f, landing / "mutual_funds" / f.name)
    grown = next(p for p in sorted((landing / "stocks").iterdir()) if p.suffix == ".jsonl")
    with grown.open("ab") as out:
        out.write(b"" if grown.read_bytes().endswith(b"\n") else b"\n")
        out.write(b"".join(_stock(i, "2.25") for i in range(999100, 999110)))
    os.utime(grown, (AN_HOUR_AGO, AN_HOUR_AGO))
    _drop(stocks[half], landing / "stocks" / f"the-same-again-{stocks[half].name}")
    fresh = landing / "stocks" / "still-being-written.jsonl"
    fresh.write_bytes(_stock(999001, "1.50"))
    before = _bronze_rows(lake)
    lakehouse = Lakehouse(lake, load_config(None), engine="spark", spark=spark)
    notes: list[str] = []
    stream = SparkFolderStream(
        lakehouse, spark, str(landing), StreamOptions(once=True, settle_seconds=60.0),
        on_start=notes.append,
    )  # fmt: skip
    totals = stream.run(lambda: False)
    assert notes and "file source" in notes[0]
    assert totals.batches == 1, totals
    taken = _bronze_rows(lake) - before
    assert taken > 0
    ids = _stock_ids(lake)
    assert set(range(999100, 999110)) <= ids, "the lines a taken file grew by were not taken"
    assert 999001 not in ids, "a file still being written was taken"

    # the embedded stream takes what is left: the settled file, one more dropped
    os.utime(fresh, (AN_HOUR_AGO, AN_HOUR_AGO))
    _drop(stocks[-1], landing / "stocks" / stocks[-1].name)
    _embedded(landing, lake)
    ids = _stock_ids(lake)
    assert 999001 in ids and set(range(999100, 999110)) <= ids

    # every table as `run` makes it from the landing folder as it ends up
    reference = tmp_path / "reference"
    ran = run_cli(
        [sys.executable, "-m", "digital_finance", "run", "--stocks", str(landing / "stocks"),
         "--funds", str(landing / "mutual_funds"), "--output", str(reference)],
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert table_differences(lake, reference) == []


def _stock(stock_id: int, price: str) -> bytes:
    return (
        f'{{"stock_id": {stock_id}, "company_id": 1001, "symbol": "NEW", "price": "{price}", '
        f'"volume": 10, "exchange": "NYSE", "timestamp": "2024-05-01T10:00:00Z"}}\n'
    ).encode()


def _bronze_rows(lake: Path) -> int:
    from deltalake import DeltaTable

    if not (lake / "bronze" / "stocks").exists():
        return 0
    return int(DeltaTable(str(lake / "bronze" / "stocks")).to_pyarrow_dataset().count_rows())


def _stock_ids(lake: Path) -> set[int]:
    from deltalake import DeltaTable

    table = DeltaTable(str(lake / "silver" / "stocks")).to_pyarrow_table(columns=["stock_id"])
    return set(table.column("stock_id").to_pylist())
