"""`NativeContract.verdicts` and `verdict` (the service's check of a request's records)
against the reference, on the generator's messy records: same reasons, or sent to the
reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from digital_finance.contract.compiled_check import native_contract
from digital_finance.contract.reference import Rejected, check_record
from digital_finance.contract.schemas import DATASETS
from tests.conftest import cli_ok


@pytest.mark.parametrize("dataset", ["stocks", "mutual_funds"])
def test_verdicts_match_the_reference(tmp_path: Path, dataset: str) -> None:
    contract = native_contract(DATASETS[dataset])
    assert contract is not None, "the native kernel is built by make setup"
    cli_ok(
        "generate", "--stocks", "3000", "--funds", "3000", "--out", str(tmp_path), "--seed", "11"
    )
    lines: list[bytes] = []
    for path in sorted((tmp_path / dataset).iterdir()):
        if path.suffix in (".json", ".jsonl", ".ndjson"):
            lines += [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    values = [ln for ln in lines if _utf8(ln) and not ln.lstrip().startswith((b"[", b"]"))]
    assert len(values) > 1000
    verdicts = contract.verdicts(values)
    assert len(verdicts) == len(values)
    decided = 0
    for value, (reasons, unsure) in zip(values, verdicts, strict=True):
        assert contract.verdict(value) == (reasons, unsure)  # one record at a time, the same
        if unsure:
            continue
        decided += 1
        verdict = check_record(value.decode(), DATASETS[dataset], "UTC")
        expected = list(verdict.reasons) if isinstance(verdict, Rejected) else []
        assert reasons == expected, value
    assert decided > 0.9 * len(values)
    assert any(reasons for reasons, _ in verdicts)  # the messy records are there


def _utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
