"""Spark reads a large file in pieces, one task each, and stages the records of one read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from digital_finance.contract.schemas import DATASETS
from digital_finance.runs.plan import PlannedFile
from digital_finance.sources.discovery import resolve_inputs
from digital_finance.sources.input_limits import InputLimits

pytestmark = pytest.mark.spark


def test_a_file_in_pieces_stages_the_records_of_one_task(spark: Any, generated: Path) -> None:
    from digital_finance.engines.spark.staging import parse_files

    listed = resolve_inputs([str(generated / "stocks")])
    files = [PlannedFile("stocks", n, f) for n, f in enumerate(listed)]
    columns = ["file_ordinal", "line_number", "raw", "reasons", "stock_id", "price", "event_time"]

    def staged(piece_bytes: int) -> tuple[int, list[Any]]:
        frame = parse_files(spark, DATASETS["stocks"], "UTC", files, InputLimits(), piece_bytes)
        rows = frame.select(*columns).collect()
        return frame.rdd.getNumPartitions(), sorted(tuple(r) for r in rows)

    tasks_whole, whole = staged(1 << 40)
    tasks_cut, cut = staged(64 * 1024)
    assert tasks_whole == len(files)
    assert tasks_cut > 2 * len(files)  # the plain files were cut, several times each
    assert cut == whole
    assert len(whole) > 25_000
