"""Generated data through the CLI: exact counts, incremental runs, expectations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import DATA_TABLES, cli, cli_ok, rows, versions


def _expected(generated: Path) -> dict[str, dict[str, object]]:
    return json.loads((generated / "expected.json").read_text())  # type: ignore[no-any-return]


def test_counts_match_what_the_generator_wrote(generated: Path, tmp_path: Path) -> None:
    out = tmp_path / "lake"
    cli_ok("run", "--stocks", str(generated / "stocks"), "--funds", str(generated / "mutual_funds"),
           "--output", str(out))  # fmt: skip
    expected = _expected(generated)
    for dataset in ("stocks", "mutual_funds"):
        assert len(rows(out, f"bronze/{dataset}")) == expected["records"][dataset]
        quarantined = rows(out, f"quarantine/{dataset}")
        by_reason: dict[str, int] = {}
        for r in quarantined:
            by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
        assert by_reason == expected["invalid"][dataset]
        assert len(rows(out, f"silver/{dataset}")) == expected["distinct_valid_keys"][dataset]
    silver = rows(out, "silver/stocks")
    assert len({r["stock_id"] for r in silver}) == len(silver)


@pytest.mark.parametrize("silver_write", ["merge", "rebuild", "rewrite", "mark", "auto"])
def test_incremental_runs_equal_one_run(generated: Path, tmp_path: Path, silver_write: str) -> None:
    """Files arriving over three runs give the same silver and gold as all at once.

    Both ways of bringing a batch into silver (Delta MERGE, and a DuckDB rebuild) must give
    exactly the rows of a single run.
    """
    config = tmp_path / "engine.toml"
    config.write_text(f'[engine]\nsilver_write = "{silver_write}"\n', encoding="utf-8")
    one = tmp_path / "one"
    cli_ok("run", "--stocks", str(generated / "stocks"), "--funds", str(generated / "mutual_funds"),
           "--output", str(one))  # fmt: skip

    landing = tmp_path / "landing"
    (landing / "stocks").mkdir(parents=True)
    (landing / "mutual_funds").mkdir(parents=True)
    inc = tmp_path / "inc"
    stock_files = sorted((generated / "stocks").iterdir())
    fund_files = sorted((generated / "mutual_funds").iterdir())
    thirds = [slice(0, 2), slice(2, 4), slice(4, None)]
    for part in thirds:
        for f in stock_files[part]:
            shutil.copy2(f, landing / "stocks" / f.name)
        for f in fund_files[part]:
            shutil.copy2(f, landing / "mutual_funds" / f.name)
        cli_ok("run", "--stocks", str(landing / "stocks"), "--funds", str(landing / "mutual_funds"),
               "--output", str(inc), "--config", str(config))  # fmt: skip
    lineage = {"_source_file"}  # paths differ (landing copy); the rows must not
    for table in ("silver/stocks", "silver/mutual_funds", "gold/stock_fund_holdings"):
        assert rows(inc, table, lineage) == rows(one, table, lineage), table
    assert len(rows(inc, "_system/pipeline_runs")) == 3


def test_expectations_warn_quarantine_and_fail(generated: Path, tmp_path: Path) -> None:
    config = tmp_path / "rules.toml"
    config.write_text(
        """
[[expectations]]
name = "price_below_one_million"
dataset = "stocks"
condition = "price < 1000000"
action = "warn"

[[expectations]]
name = "volume_present"
dataset = "stocks"
condition = "volume IS NOT NULL"
action = "quarantine"
""",
        encoding="utf-8",
    )
    out = tmp_path / "lake"
    text = cli_ok("run", "--stocks", str(generated / "stocks"), "--output", str(out),
                  "--config", str(config))  # fmt: skip
    assert "price_below_one_million" in text and "volume_present" in text
    silver = rows(out, "silver/stocks")
    assert silver and all(r["volume"] is not None for r in silver)
    moved = [r for r in rows(out, "quarantine/stocks") if r["reason"] == "volume_present"]
    assert moved and all(r["step"] == "expectations_stocks" for r in moved)
    run = rows(out, "_system/pipeline_runs")[0]
    logged = {r["rule"]: r["failures"] for r in run["rules"]}
    assert logged["volume_present"] == len(moved)
    assert logged["price_below_one_million"] > 0  # the generator writes a few huge prices

    failing = tmp_path / "fail.toml"
    failing.write_text(
        '[[expectations]]\nname = "tiny_prices"\ndataset = "stocks"\n'
        'condition = "price < 10"\naction = "fail"\n',
        encoding="utf-8",
    )
    out2 = tmp_path / "lake2"
    result = cli("run", "--stocks", str(generated / "stocks"), "--output", str(out2),
                 "--config", str(failing))  # fmt: skip
    assert result.exit_code == 1 and "tiny_prices" in result.output
    written = versions(out2)
    assert not any(t in written for t in DATA_TABLES)  # nothing committed to any data table
    assert rows(out2, "_system/pipeline_runs")[0]["status"] == "failed"


def test_bad_expectation_is_a_clear_error(generated: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[[expectations]]\nname = "typo"\ndataset = "stocks"\ncondition = "prise > 0"\n',
        encoding="utf-8",
    )
    result = cli("run", "--stocks", str(generated / "stocks"), "--output", str(tmp_path / "o"),
                 "--config", str(config))  # fmt: skip
    assert result.exit_code == 2
    assert "typo" in result.output and "price" in result.output
