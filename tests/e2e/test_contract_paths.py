"""The native kernel and the DuckDB SQL contract give the same lakehouse, through the CLI.

The kernel is the default wherever it is installed; `[engine] contract = "sql"` runs the
compiled DuckDB query instead. Both are held to the reference record by record in
`tests/unit`; here whole runs are compared table by table, on hand-made nasty files and on
generated data, in UTC and in a zone with DST.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from digital_finance import native
from tests.conftest import DATA_TABLES, cli, cli_ok, rows
from tests.e2e.test_golden import _write_inputs

pytestmark = pytest.mark.skipif(native.kernel() is None, reason=native.INSTALL_HINT)


def _config(tmp: Path, contract: str, tz: str) -> Path:
    path = tmp / f"{contract}.toml"
    path.write_text(f'source_tz = "{tz}"\n[engine]\ncontract = "{contract}"\n', encoding="utf-8")
    return path


def _rescued_as_json(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # the SQL path writes unknown numbers back from doubles (docs/CONTRACT_RULES.md); the
    # kernel keeps their text, as the reference does: compare `_rescued` as JSON values
    for row in table:
        if row.get("_rescued") is not None:
            row["_rescued"] = json.loads(row["_rescued"], parse_float=Decimal)
    return table


def _lakehouse(stocks: Path, funds: Path, out: Path, config: Path) -> dict[str, list[Any]]:
    output = cli_ok("run", "--stocks", str(stocks), "--funds", str(funds), "--output", str(out),
                    "--config", str(config))  # fmt: skip
    assert "records decided by" in output
    return {t: _rescued_as_json(rows(out, t)) for t in DATA_TABLES}


@pytest.mark.slow
@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
def test_nasty_files_give_the_same_tables(tmp_path: Path, tz: str) -> None:
    stocks, funds = _write_inputs(tmp_path)
    by_kernel = _lakehouse(stocks, funds, tmp_path / "k", _config(tmp_path, "native", tz))
    by_sql = _lakehouse(stocks, funds, tmp_path / "s", _config(tmp_path, "sql", tz))
    assert by_kernel["silver/stocks"], "the kernel's run wrote no silver"
    assert by_kernel == by_sql


@pytest.mark.slow
def test_generated_data_gives_the_same_tables(generated: Path, tmp_path: Path) -> None:
    stocks, funds = generated / "stocks", generated / "mutual_funds"
    by_kernel = _lakehouse(stocks, funds, tmp_path / "k", _config(tmp_path, "native", "UTC"))
    by_sql = _lakehouse(stocks, funds, tmp_path / "s", _config(tmp_path, "sql", "UTC"))
    expected = json.loads((generated / "expected.json").read_text(encoding="utf-8"))
    for dataset in ("stocks", "mutual_funds"):
        silver = by_kernel[f"silver/{dataset}"]
        assert len(silver) == expected["distinct_valid_keys"][dataset]
    for table in DATA_TABLES:
        assert by_kernel[table] == by_sql[table], table


def test_native_without_the_kernel_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stocks, _ = _write_inputs(tmp_path)
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    native.kernel.cache_clear()
    try:
        result = cli("run", "--stocks", str(stocks), "--output", str(tmp_path / "out"),
                     "--config", str(_config(tmp_path, "native", "UTC")))  # fmt: skip
    finally:
        monkeypatch.delenv(native.ENV_SWITCH)
        native.kernel.cache_clear()
    assert result.exit_code == 2
    assert '[engine] contract = "native"' in result.output
    assert "pip install ./native/kernel" in result.output
    assert not (tmp_path / "out" / "bronze").exists()


def test_an_unknown_contract_choice_is_refused(tmp_path: Path) -> None:
    stocks, _ = _write_inputs(tmp_path)
    result = cli("run", "--stocks", str(stocks), "--output", str(tmp_path / "out"),
                 "--config", str(_config(tmp_path, "fast", "UTC")))  # fmt: skip
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "[engine] `contract`: Input should be 'auto', 'native' or 'sql'" in said
