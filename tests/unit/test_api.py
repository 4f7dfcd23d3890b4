"""The library API: a Lakehouse object ingests, reads and fails with typed errors, silently."""

from __future__ import annotations

import io
import json
import logging
import pickle
from pathlib import Path

import pytest

import digital_finance
from digital_finance import (
    BatchClaimError,
    FileChangedError,
    InputError,
    Lakehouse,
    RuleFailedError,
    TerminalError,
    TransientError,
)
from digital_finance.logs import JsonLines
from digital_finance.runs.report import BatchReport, RuleFailures

STOCK = '{{"stock_id": {i}, "company_id": {c}, "symbol": "S{i}", "price": "{p}", "timestamp": "2024-03-15T14:30:0{s}Z"}}\n'
FUND = '{{"fund_id": "F1", "company_id": {c}, "holding_weight": "1.5", "nav": "10.25", "as_of": "2024-03-15T00:00:00Z"}}\n'


def _files(tmp_path: Path, name: str, stocks: list[tuple[int, int, str, int]]) -> Path:
    path = tmp_path / "in" / f"{name}.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(STOCK.format(i=i, c=c, p=p, s=s) for i, c, p, s in stocks))
    return path


def test_a_long_lived_lakehouse_ingests_batch_after_batch_and_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = Lakehouse(tmp_path / "lake")
    funds = tmp_path / "in" / "funds.jsonl"
    first = _files(tmp_path, "a", [(1, 7, "10.5", 1), (2, 8, "20", 1)])
    funds.write_text(FUND.format(c=7))
    report = lake.ingest_files(stocks=[str(first)], funds=[str(funds)])
    assert [b.batch_id for b in report.batches] == [1] and report.ok
    second = _files(tmp_path, "b", [(1, 7, "11.25", 2)])
    assert [b.batch_id for b in lake.ingest_files(stocks=[str(second)]).batches] == [2]
    assert lake.ingest_files(stocks=[str(first), str(second)]).batches == []
    silver = {r["stock_id"]: str(r["price"]) for r in lake.read("silver.stocks").to_pylist()}
    assert silver == {1: "11.250000", 2: "20.000000"}
    gold = lake.read("gold.stock_fund_holdings", columns=["fund_id", "price"]).to_pylist()
    assert [(g["fund_id"], str(g["price"])) for g in gold] == [("F1", "11.250000")]
    assert lake.read("silver.stocks", version=0).num_rows == 2
    assert set(lake.tables()) >= {"bronze.stocks", "silver.stocks", "gold.stock_fund_holdings"}
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_errors_say_whether_a_retry_can_help(tmp_path: Path) -> None:
    lake = Lakehouse(tmp_path / "lake")
    with pytest.raises(InputError) as missing:
        lake.ingest_files(stocks=[str(tmp_path / "nope-*.jsonl")])
    assert isinstance(missing.value, TerminalError) and not missing.value.retryable
    with pytest.raises(TerminalError, match="no table named"):
        lake.read("silver.nope")
    with pytest.raises(TerminalError, match="does not exist yet"):
        lake.read("silver.stocks")
    assert BatchClaimError(3).retryable and isinstance(BatchClaimError(3), TransientError)
    assert FileChangedError("f", "x").retryable


@pytest.mark.parametrize(
    "error",
    [
        BatchClaimError(4),
        FileChangedError("/data/a.jsonl", "it ends at byte 3, not 9"),
        InputError("no file or folder matches 'x'"),
        RuleFailedError(BatchReport(1, "r", "failed"), [RuleFailures("stocks", "r", "fail", 2)]),
    ],
)
def test_errors_survive_a_process_boundary(error: Exception) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)


def test_the_library_logs_batches_with_their_ids_as_json_lines(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    logger = logging.getLogger("digital_finance")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        Lakehouse(tmp_path / "lake").ingest_files(
            stocks=[str(_files(tmp_path, "a", [(1, 1, "1", 1)]))]
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    claimed = [line for line in lines if "claimed" in line["message"]]
    assert claimed and claimed[0]["batch_id"] == 1 and len(claimed[0]["run_id"]) == 32
    assert all(line["level"] == "info" for line in lines)


def test_the_public_names_are_all_importable() -> None:
    for name in digital_finance.__all__:
        assert getattr(digital_finance, name) is not None
    with pytest.raises(AttributeError):
        _ = digital_finance.not_a_name  # type: ignore[attr-defined]
