"""Table maintenance: many small batches compacted and checkpointed, nothing else changed.

Every table must hold the same rows after `digital-finance maintain` as before, older
versions must still read, a re-run must still ingest nothing, and the next batches must give
what they give on a lakehouse that was never maintained. Maintenance beside two writers
(processes at once), holding the lock for its whole pass or (as a stream does) for each
commit only, must leave exactly what the writers alone leave.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from digital_finance import Lakehouse
from digital_finance.lakehouse.maintenance import MaintenancePolicy
from tests.conftest import DATA_TABLES, REPO, cli_process, rows

pytestmark = pytest.mark.slow

SLICE = 150  # lines per small batch


def _slices(generated: Path, folder: Path, count: int) -> list[Path]:
    """`count` small NDJSON files cut from one generated stocks file."""
    source = sorted((generated / "stocks").glob("*.jsonl"))[0]
    lines = source.read_bytes().splitlines(keepends=True)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = folder / f"s{i:03d}.jsonl"
        path.write_bytes(b"".join(lines[i * SLICE : (i + 1) * SLICE]))
        out.append(path)
    return out


def _files(lake: Path, table: str) -> int:
    return len(DeltaTable(str(lake / table)).file_uris())


def test_maintain_compacts_and_changes_no_row(generated: Path, tmp_path: Path) -> None:
    pieces = _slices(generated, tmp_path / "in", 24)
    maintained, plain = tmp_path / "maintained", tmp_path / "plain"
    for lake in (maintained, plain):
        opened = Lakehouse(lake)
        for piece in pieces[:20]:
            opened.ingest_files(stocks=[str(piece)])
    before = {t: rows(maintained, t) for t in DATA_TABLES}
    old_version = DeltaTable(str(maintained / "silver/stocks")).version() - 5
    old_silver = DeltaTable(
        str(maintained / "silver/stocks"), version=old_version
    ).to_pyarrow_table()
    assert _files(maintained, "bronze/stocks") == 20

    done = cli_process("maintain", "--output", str(maintained), "--config",
                       str(_policy(tmp_path, min_small_files=8)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "bronze/stocks" in done.stdout
    assert _files(maintained, "bronze/stocks") == 1
    assert _files(maintained, "_system/batches") == 1
    assert (maintained / "bronze/stocks/_delta_log/_last_checkpoint").exists()
    for table in DATA_TABLES:
        assert rows(maintained, table) == before[table], table
    again = DeltaTable(str(maintained / "silver/stocks"), version=old_version).to_pyarrow_table()
    assert again.sort_by("stock_id").equals(old_silver.sort_by("stock_id"))  # time travel

    rerun = Lakehouse(maintained).ingest_files(stocks=[str(p) for p in pieces[:20]])
    assert rerun.batches == []  # every byte was ingested before: still known after compaction
    for lake in (maintained, plain):
        opened = Lakehouse(lake)
        for piece in pieces[20:]:
            opened.ingest_files(stocks=[str(piece)])
    for table in DATA_TABLES:
        assert rows(maintained, table) == rows(plain, table), table


def test_vacuum_deletes_what_compaction_replaced(generated: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    opened = Lakehouse(lake)
    for piece in _slices(generated, tmp_path / "in", 10):
        opened.ingest_files(stocks=[str(piece)])
    opened.maintain(MaintenancePolicy(min_small_files=4))
    on_disk = len(list((lake / "bronze/stocks").glob("*.parquet")))
    assert on_disk == 11  # the ten small files are still there for time travel
    refused = cli_process("maintain", "--output", str(lake), "--vacuum-hours", "0")
    assert refused.returncode == 2 and "1 or more" in refused.stderr, refused.stderr
    opened.maintain(MaintenancePolicy(min_small_files=4, vacuum_retention_hours=0))
    assert len(list((lake / "bronze/stocks").glob("*.parquet"))) == 1
    assert DeltaTable(str(lake / "bronze/stocks")).to_pyarrow_table().num_rows == 10 * SLICE


def test_maintenance_beside_two_writers_leaves_what_the_writers_alone_leave(
    generated: Path, tmp_path: Path
) -> None:
    stocks = _slices(generated, tmp_path / "stocks", 12)
    funds = sorted((generated / "mutual_funds").iterdir())
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    # the same batches, one writer after the other and never maintained
    for lake in (shared, alone):
        Lakehouse(lake).ingest_files(stocks=[str(stocks[0])])
    script = (
        "import sys\nfrom digital_finance import Lakehouse\n"
        "from digital_finance.lakehouse.maintenance import MaintenancePolicy\n"
        "lake = Lakehouse(sys.argv[1])\n"
        "if sys.argv[2] == 'maintain':\n"
        "    for n in range(6):  # the whole pass under the lock, then a stream's way\n"
        "        how = lake.maintain if n % 2 else lake.maintain_beside_writers\n"
        "        how(MaintenancePolicy(min_small_files=2))\n"
        "else:\n"
        "    for path in sys.argv[3:]:\n"
        "        lake.ingest_files(**{sys.argv[2]: [path]})\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(shared), "stocks", *map(str, stocks[1:])], cwd=REPO),
        subprocess.Popen([sys.executable, "-c", script, str(shared), "funds", *map(str, funds)], cwd=REPO),
        subprocess.Popen([sys.executable, "-c", script, str(shared), "maintain"], cwd=REPO),
    ]  # fmt: skip
    for p in procs:
        assert p.wait(timeout=600) == 0
    for path in stocks[1:]:
        Lakehouse(alone).ingest_files(stocks=[str(path)])
    for path in funds:
        Lakehouse(alone).ingest_files(funds=[str(path)])
    # stocks and holdings never compete for a key, so the order the writers took turns in
    # does not matter to silver; gold is rebuilt from both silvers by the last batch
    for table in DATA_TABLES:
        assert rows(shared, table) == rows(alone, table), table


def _policy(folder: Path, min_small_files: int) -> Path:
    config = folder / "maintenance.toml"
    config.write_text(f"[maintenance]\nmin_small_files = {min_small_files}\n")
    return config


def test_maintenance_waits_for_an_unfinished_batch(generated: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    pieces = _slices(generated, tmp_path / "in", 2)
    Lakehouse(lake).ingest_files(stocks=[str(pieces[0])])
    crashed = cli_process("run", "--stocks", str(pieces[1]), "--output", str(lake),
                          env={"DIGITAL_FINANCE_CRASH_AT": "before_silver_stocks"})  # fmt: skip
    assert crashed.returncode == 137, crashed.stderr
    refused = cli_process("maintain", "--output", str(lake))
    assert refused.returncode == 2, refused.stderr
    assert "batch 2 is unfinished" in refused.stderr and "Traceback" not in refused.stderr
    Lakehouse(lake).ingest_files(stocks=[str(pieces[1])])  # finishes batch 2
    assert cli_process("maintain", "--output", str(lake)).returncode == 0
