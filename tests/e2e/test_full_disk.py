"""A full disk mid-batch: a one-line message (exit 2); with space again, the same command
finishes the batch and the tables equal an uninterrupted run's.

The lakehouse lives on a 1 MiB tmpfs the test mounts (root only; skipped elsewhere), which
the batch outgrows while writing silver; the tmpfs is then grown and the run repeated.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import cli_process, rows

pytestmark = pytest.mark.slow

DATA = [
    "bronze/stocks", "bronze/mutual_funds", "quarantine/stocks", "quarantine/mutual_funds",
    "silver/stocks", "silver/mutual_funds", "gold/stock_fund_holdings",
]  # fmt: skip


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_line_and_the_next_run_finishes(
    small_disk: Path, generated: Path, tmp_path: Path
) -> None:
    args = ["run", "--stocks", str(generated / "stocks"), "--funds",
            str(generated / "mutual_funds")]  # fmt: skip
    clean = tmp_path / "clean"
    assert cli_process(*args, "--output", str(clean)).returncode == 0
    lake = small_disk / "lake"
    full = cli_process(*args, "--output", str(lake), env={"COLUMNS": "400"})
    assert full.returncode == 2, full.stderr
    assert "Traceback" not in full.stderr
    assert "the disk is full" in full.stderr and "run the same command again" in full.stderr
    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
    again = cli_process(*args, "--output", str(lake))
    assert again.returncode == 0, again.stderr
    for table in DATA:
        assert rows(lake, table) == rows(clean, table), table
