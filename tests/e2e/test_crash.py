"""Kill the pipeline mid-run, run it again, and get the same tables as one clean run."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from digital_finance.engines.embedded import deletion_vectors
from tests.conftest import REPO, cli_process, rows

TABLES = [
    "bronze/stocks", "bronze/mutual_funds", "quarantine/stocks", "quarantine/mutual_funds",
    "silver/stocks", "silver/mutual_funds", "gold/stock_fund_holdings",
]  # fmt: skip


@pytest.fixture(scope="module")
def clean(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "lake"
    done = cli_process(*_args(generated, out))
    assert done.returncode == 0, done.stderr
    return out


def _args(generated: Path, out: Path) -> list[str]:
    return ["run", "--stocks", str(generated / "stocks"), "--funds",
            str(generated / "mutual_funds"), "--output", str(out)]  # fmt: skip


def _assert_same(out: Path, clean: Path) -> None:
    for table in TABLES:
        assert rows(out, table) == rows(clean, table), table
    runs = rows(out, "_system/pipeline_runs")
    assert [r["status"] for r in runs if r["status"] == "succeeded"] == ["succeeded"]


POINTS = [
    "after_plan", "before_bronze_stocks", "before_quarantine_stocks", "before_silver_stocks",
    "before_bronze_mutual_funds", "before_silver_mutual_funds", "before_gold_stock_fund_holdings",
    "before_run_log",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_crash_at_each_commit_boundary_then_rerun(
    point: str, generated: Path, clean: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lake"
    crashed = cli_process(*_args(generated, out), env={"DIGITAL_FINANCE_CRASH_AT": point})
    assert crashed.returncode == 137, crashed.stderr
    again = cli_process(*_args(generated, out))
    assert again.returncode == 0, again.stderr
    assert "resumed" in again.stdout or point == "after_plan" or "already committed" in again.stdout
    _assert_same(out, clean)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.8, 1.6, 2.4])
def test_kill_9_at_random_moments_then_rerun(
    delay: float, generated: Path, clean: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lake"
    proc = subprocess.Popen(
        [sys.executable, "-m", "digital_finance", *_args(generated, out)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = cli_process(*_args(generated, out))
    assert again.returncode == 0, again.stderr
    _assert_same(out, clean)


MARKED_POINTS = ["before_silver_mutual_funds", "before_gold_stock_fund_holdings"]


@pytest.mark.slow
@pytest.mark.parametrize("point", MARKED_POINTS)
def test_crash_in_a_marked_batch_then_rerun(
    point: str, generated: Path, clean: Path, tmp_path: Path
) -> None:
    """A second batch that marks silver's replaced rows in deletion vectors and replaces
    only gold's touched companies, killed between its commits, then run again."""
    config = tmp_path / "engine.toml"
    config.write_text('[engine]\nsilver_write = "mark"\ngold_write = "increment"\n')
    landing = {d: tmp_path / "landing" / d for d in ("stocks", "mutual_funds")}
    out = tmp_path / "lake"
    args = ["run", "--stocks", str(landing["stocks"]), "--funds", str(landing["mutual_funds"]),
            "--output", str(out), "--config", str(config)]  # fmt: skip
    for half in (slice(0, 2), slice(2, None)):
        for dataset, folder in landing.items():
            folder.mkdir(parents=True, exist_ok=True)
            for f in sorted((generated / dataset).iterdir())[half]:
                shutil.copy2(f, folder / f.name)
        if half.start == 0:
            assert cli_process(*args).returncode == 0
    crashed = cli_process(*args, env={"DIGITAL_FINANCE_CRASH_AT": point})
    assert crashed.returncode == 137, crashed.stderr
    again = cli_process(*args)
    assert again.returncode == 0, again.stderr
    lineage = {"_source_file", "source_file"}  # the landing copies' paths
    for table in TABLES:
        assert rows(out, table, lineage) == rows(clean, table, lineage), table
    for table in ("silver/stocks", "gold/stock_fund_holdings"):
        assert deletion_vectors.has_vectors(DeltaTable(str(out / table))), table
