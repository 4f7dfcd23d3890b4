"""Ctrl-C (SIGINT) or SIGTERM at any stage: one line that says what to do, exit 130 / 143,
`tables` shows the unfinished batch, and running the same command again finishes it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import cli_process, rows

pytestmark = pytest.mark.slow

DATA = [
    "bronze/stocks", "bronze/mutual_funds", "quarantine/stocks", "quarantine/mutual_funds",
    "silver/stocks", "silver/mutual_funds", "gold/stock_fund_holdings",
]  # fmt: skip
STAGES = [
    "after_staging", "after_plan", "before_bronze_stocks", "before_quarantine_stocks",
    "before_silver_stocks", "before_bronze_mutual_funds", "before_silver_mutual_funds",
    "before_gold_stock_fund_holdings", "before_run_log",
]  # fmt: skip
WIDE = {"COLUMNS": "500"}  # one message, one line


def _args(generated: Path, lake: Path) -> list[str]:
    return ["run", "--stocks", str(generated / "stocks"), "--funds",
            str(generated / "mutual_funds"), "--output", str(lake)]  # fmt: skip


@pytest.fixture(scope="module")
def clean(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("clean") / "lake"
    assert cli_process(*_args(generated, lake)).returncode == 0
    return lake


PROGRESS = re.compile(r"^\[\s*\d+\.\d+s\] ")  # the timed lines a log file gets


def _said(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not PROGRESS.match(line)]


@pytest.mark.parametrize("stage", STAGES)
def test_sigint_at_each_stage_says_one_line_and_the_rerun_finishes(
    stage: str, generated: Path, clean: Path, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    stopped = cli_process(*_args(generated, lake), env={"DIGITAL_FINANCE_SIGNAL_AT": stage, **WIDE})
    assert stopped.returncode == 130, stopped.stderr
    said = _said(stopped.stderr)
    assert len(said) == 1, stopped.stderr
    assert said[0].startswith("interrupted while") and "run the same command again" in said[0]
    claimed = "batch 1 is claimed" in said[0]
    assert claimed == (stage not in ("after_staging",)), said[0]
    if claimed:
        listed = cli_process("tables", "--output", str(lake), env=WIDE)
        assert "batch 1 is unfinished" in listed.stdout
    again = cli_process(*_args(generated, lake))
    assert again.returncode == 0, again.stderr
    for table in DATA:
        assert rows(lake, table) == rows(clean, table), table
    listed = cli_process("tables", "--output", str(lake), env=WIDE)
    assert "unfinished" not in listed.stdout


def test_sigterm_exits_143_with_the_same_line(generated: Path, clean: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    env = {"DIGITAL_FINANCE_SIGNAL_AT": "before_silver_mutual_funds:TERM", **WIDE}
    stopped = cli_process(*_args(generated, lake), env=env)
    assert stopped.returncode == 143, stopped.stderr
    said = _said(stopped.stderr)
    assert len(said) == 1 and "writing silver/mutual_funds" in said[0], stopped.stderr
    assert cli_process(*_args(generated, lake)).returncode == 0
    for table in DATA:
        assert rows(lake, table) == rows(clean, table), table


def test_sigint_on_the_spark_engine_is_the_same_line(tmp_path: Path) -> None:
    """PySpark installs a SIGINT handler of its own; the run still says where it stopped."""
    from tests.conftest import REPO

    lake = tmp_path / "lake"
    args = ["run", "--engine", "spark", "--stocks", str(REPO / "data" / "stocks.json"),
            "--output", str(lake)]  # fmt: skip
    stopped = cli_process(*args, env={"DIGITAL_FINANCE_SIGNAL_AT": "before_silver_stocks", **WIDE})
    assert stopped.returncode == 130, stopped.stderr
    message = stopped.stderr[stopped.stderr.find("interrupted while") :]
    assert message.startswith("interrupted while writing silver/stocks; batch 1 is claimed")
    assert "Traceback" not in stopped.stderr and "Aborted" not in stopped.stderr
    assert cli_process(*args).returncode == 0
    assert len(rows(lake, "silver/stocks")) == 3
