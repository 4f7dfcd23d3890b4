"""A lakehouse never gets stuck: an interrupted batch whose files are gone or changed is
finished from bronze when bronze holds it, or abandoned with `batch abandon`; what dead
writers left (scratch folders, data files no commit names) is removed by the next run."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from tests.conftest import REPO, rows
from tests.conftest import cli_process as _cli_process

pytestmark = pytest.mark.slow

DATA = [
    "bronze/stocks", "bronze/mutual_funds", "quarantine/stocks", "quarantine/mutual_funds",
    "silver/stocks", "silver/mutual_funds", "gold/stock_fund_holdings",
]  # fmt: skip
CRASH = "DIGITAL_FINANCE_CRASH_AT"


def cli_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # wide enough that no message is wrapped: the tests match whole sentences and paths
    return _cli_process(*args, env={"COLUMNS": "500", **(env or {})})


def _inputs(generated: Path, into: Path) -> Path:
    shutil.copytree(generated / "stocks", into / "stocks")
    shutil.copytree(generated / "mutual_funds", into / "mutual_funds")
    return into


def _run(inputs: Path, lake: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return cli_process("run", "--stocks", str(inputs / "stocks"), "--funds",
                       str(inputs / "mutual_funds"), "--output", str(lake), env=env)  # fmt: skip


@pytest.fixture(scope="module")
def clean(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("clean") / "lake"
    done = _run(generated, lake)
    assert done.returncode == 0, done.stderr
    return lake


# the inputs are copies, so their paths differ from the clean run's; nothing else may
PATHS = {"source_file", "_source_file"}


def _same_data(lake: Path, clean: Path) -> None:
    for table in DATA:
        assert rows(lake, table, PATHS) == rows(clean, table, PATHS), table


def test_a_batch_whose_files_are_gone_is_finished_from_bronze(
    generated: Path, clean: Path, tmp_path: Path
) -> None:
    inputs, lake = _inputs(generated, tmp_path / "in"), tmp_path / "lake"
    crashed = _run(inputs, lake, **{CRASH: "before_silver_mutual_funds"})
    assert crashed.returncode == 137
    # one file gone, one changed: the batch can no longer be read from its files
    (inputs / "stocks" / "part-00000.jsonl").unlink()
    changed = inputs / "mutual_funds" / "part-00003.jsonl"
    changed.write_bytes(changed.read_bytes().replace(b"1", b"2", 1))
    keep = inputs / "stocks" / "part-00004.ndjson"
    again = cli_process("run", "--stocks", str(keep), "--output", str(lake))
    assert again.returncode == 0, again.stderr
    assert "finished from what bronze already holds" in again.stdout
    _same_data(lake, clean)


def test_a_batch_bronze_does_not_hold_is_refused_then_abandoned(
    generated: Path, clean: Path, tmp_path: Path
) -> None:
    inputs, lake = _inputs(generated, tmp_path / "in"), tmp_path / "lake"
    assert _run(inputs, lake, **{CRASH: "before_silver_stocks"}).returncode == 137
    landed = DeltaTable(str(lake / "bronze" / "stocks")).version()
    victim = inputs / "stocks" / "part-00003.jsonl"
    original = victim.read_bytes()
    victim.write_bytes(original.replace(b"1", b"7", 1))

    refused = _run(inputs, lake)
    assert refused.returncode == 2
    message = refused.stderr
    assert str(victim) in message and "changed since it was planned" in message
    assert "put the file back as it was" in message
    assert "digital-finance batch abandon 1" in message

    gave_up = cli_process("batch", "abandon", "1", "--output", str(lake))
    assert gave_up.returncode == 0, gave_up.stderr
    assert "bronze/stocks: emptied" in " ".join(gave_up.stdout.split())
    for table in DATA:
        path = lake / table
        if path.exists():
            assert rows(lake, table) == [], table
    # the abandoned rows stay readable at their versions
    old = DeltaTable(str(lake / "bronze" / "stocks"), version=landed).to_pyarrow_table()
    assert old.num_rows == len(rows(clean, "bronze/stocks"))
    again = cli_process("batch", "abandon", "1", "--output", str(lake))
    assert again.returncode == 0 and "abandoned before" in again.stdout

    victim.write_bytes(original)  # the files as they were: read as new, under batch 2
    done = _run(inputs, lake)
    assert done.returncode == 0, done.stderr
    _same_data(lake, clean)
    batches = {r["_batch_id"] for r in DeltaTable(str(lake / "silver" / "stocks"))
               .to_pyarrow_table(columns=["_batch_id"]).to_pylist()}  # fmt: skip
    assert batches == {2}  # the abandoned id is never used again


def test_abandon_refuses_a_finished_or_unknown_batch(clean: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(clean, lake)
    finished = cli_process("batch", "abandon", "1", "--output", str(lake))
    assert finished.returncode == 2
    assert "batch 1 finished" in finished.stderr
    unknown = cli_process("batch", "abandon", "9", "--output", str(lake))
    assert unknown.returncode == 2
    assert "there is no batch 9" in unknown.stderr
    _same_data(lake, clean)


def _hold_scratch(lake: Path, name: str) -> subprocess.Popen[str]:
    """A process that holds a scratch folder, as a live writer does."""
    code = (
        "import sys, time\n"
        "from digital_finance.lakehouse.scratch import scratch_folder\n"
        "from digital_finance.lakehouse.storage import location\n"
        f"with scratch_folder(location({str(lake)!r}), {name!r}):\n"
        "    print('holding', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def test_what_dead_writers_left_is_removed_and_live_work_is_kept(
    generated: Path, clean: Path, tmp_path: Path
) -> None:
    inputs, lake = _inputs(generated, tmp_path / "in"), tmp_path / "lake"
    assert _run(inputs, lake, **{CRASH: "before_silver_stocks"}).returncode == 137
    dead = list((lake / "_staging").iterdir())
    assert len(dead) == 1  # the killed run's spill folder
    # silver's first files, written ahead of the commits that would have created its tables:
    # stocks' at least, and mutual funds' when the silver thread got that far before the kill
    ahead = list((lake / "silver").rglob("*.parquet"))
    assert 1 <= len(ahead) <= 2 and not list((lake / "silver").rglob("_delta_log"))
    # a data file that no commit names, as a writer killed mid-write leaves it
    table = lake / "bronze" / "stocks"
    some = next(p for p in table.glob("*.parquet"))
    orphan = table / "part-orphan-left-by-a-crash.parquet"
    shutil.copy(some, orphan)
    old = time.time() - 3600
    unmarked = lake / "_staging" / "from-an-old-version"  # no lock file, an hour old
    unmarked.mkdir()
    os.utime(unmarked, (old, old))
    live = _hold_scratch(lake, "live-writer")
    try:
        done = _run(inputs, lake)
        assert done.returncode == 0, done.stderr
        out = " ".join(done.stdout.split())
        assert "removed 2 scratch folder(s) of interrupted runs" in out
        # the planted file, and the killed run's first silver files
        assert f"removed {1 + len(ahead)} data file(s) no commit refers to" in out
        assert not list((lake / "silver").rglob("*.parquet")) or all(
            (p.parent / "_delta_log").is_dir() for p in (lake / "silver").rglob("*.parquet")
        )
        assert not dead[0].exists() and not unmarked.exists() and not orphan.exists()
        assert (lake / "_staging" / "live-writer").is_dir()  # its owner is alive
        marker = os.open(lake / "_staging" / "live-writer" / ".in-use", os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(marker, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(marker)
    finally:
        live.kill()
        live.wait()
    _same_data(lake, clean)
    for version in range(DeltaTable(str(table)).version() + 1):  # every version still reads
        DeltaTable(str(table), version=version).to_pyarrow_table()


def test_an_abandon_cut_short_blocks_runs_until_it_is_finished(
    generated: Path, clean: Path, tmp_path: Path
) -> None:
    inputs, lake = _inputs(generated, tmp_path / "in"), tmp_path / "lake"
    assert _run(inputs, lake, **{CRASH: "before_gold_stock_fund_holdings"}).returncode == 137
    cut = cli_process("batch", "abandon", "1", "--output", str(lake),
                      env={CRASH: "abandon_silver/stocks"})  # fmt: skip
    assert cut.returncode == 137  # bronze and quarantine restored, silver not yet
    blocked = _run(inputs, lake)
    assert blocked.returncode == 2
    assert "abandoning batch 1 was cut short" in blocked.stderr
    assert "digital-finance batch abandon 1" in blocked.stderr
    done = cli_process("batch", "abandon", "1", "--output", str(lake))
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "finishing an abandon that was cut short" in out
    assert "silver/stocks: emptied" in out
    assert "restored by the attempt that was cut short: bronze/stocks" in out
    for table in DATA:
        if (lake / table).exists():
            assert rows(lake, table) == [], table
    again = _run(inputs, lake)
    assert again.returncode == 0, again.stderr
    _same_data(lake, clean)


def test_finishing_from_bronze_keeps_the_valid_elements_of_a_one_line_array(
    tmp_path: Path,
) -> None:
    good = '{"stock_id": %d, "company_id": 7, "symbol": "S%d", "price": 1, "timestamp": 0}'
    elements = [good % (i, i) for i in range(1, 5)] + ['{"stock_id": "x"}', '{"stock_id": 9}']
    source = tmp_path / "array.json"
    source.write_text("[" + ",".join(elements) + "]")  # every element on line 1
    clean, lake = tmp_path / "clean", tmp_path / "lake"
    assert cli_process("run", "--stocks", str(source), "--output", str(clean)).returncode == 0
    crashed = cli_process("run", "--stocks", str(source), "--output", str(lake),
                          env={CRASH: "before_silver_stocks"})  # fmt: skip
    assert crashed.returncode == 137
    source.write_text("[]")  # changed: the batch can only be finished from bronze
    other = tmp_path / "other.jsonl"
    other.write_text("")
    again = cli_process("run", "--stocks", str(other), "--output", str(lake))
    assert again.returncode == 0, again.stderr
    assert "finished from what bronze already holds" in again.stdout
    for table in ("silver/stocks", "quarantine/stocks", "bronze/stocks"):
        assert rows(lake, table, PATHS) == rows(clean, table, PATHS), table
    assert len(rows(lake, "silver/stocks")) == 4
