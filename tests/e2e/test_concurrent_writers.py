"""Several `digital-finance run` processes on one lakehouse at once, one of them killed.

Whatever the interleaving, the tables must be exactly those of one sequential run of the same
inputs in the order the batches were committed: no duplicate key, no lost or doubled row, no
two batches under one id.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from digital_finance.generate import generate
from tests.conftest import DATA_TABLES, REPO, cli_process, rows

WRITERS = 4


@pytest.fixture(scope="module")
def input_sets(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four generated data sets whose keys overlap, so the order of batches matters."""
    base = tmp_path_factory.mktemp("concurrent-inputs")
    sets = []
    for i in range(WRITERS):
        out = base / f"set{i}"
        generate(out, 6_000, 800, seed=100 + i)
        sets.append(out)
    return sets


def _args(inputs: Path, out: Path) -> list[str]:
    return ["run", "--stocks", str(inputs / "stocks"), "--funds", str(inputs / "mutual_funds"),
            "--output", str(out)]  # fmt: skip


def _all_args(sets: list[Path], out: Path) -> list[str]:
    args = ["run", "--output", str(out)]
    for s in sets:
        args += ["--stocks", str(s / "stocks"), "--funds", str(s / "mutual_funds")]
    return args


def _start(inputs: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "digital_finance", *_args(inputs, out), *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _batches(out: Path) -> dict[int, set[str]]:
    """Batch id -> the input set folders its files came from, from `_system/batches`."""
    found: dict[int, set[str]] = {}
    for row in DeltaTable(str(out / "_system/batches")).to_pyarrow_table().to_pylist():
        found.setdefault(row["batch_id"], set()).add(Path(row["path"]).parents[1].name)
    return found


def _succeeded(out: Path) -> list[int]:
    runs = DeltaTable(str(out / "_system/pipeline_runs")).to_pyarrow_table().to_pylist()
    return sorted(r["batch_id"] for r in runs if r["status"] == "succeeded")


def _sequential(sets: list[Path], order: list[str], out: Path) -> None:
    by_name = {s.name: s for s in sets}
    for name in order:
        done = cli_process(*_args(by_name[name], out))
        assert done.returncode == 0, done.stderr


def _assert_equal_to_sequential(out: Path, sets: list[Path], tmp_path: Path) -> None:
    batches = _batches(out)
    # every batch holds the files of exactly one input set, each set in exactly one batch
    assert all(len(names) == 1 for names in batches.values()), batches
    order = [next(iter(batches[b])) for b in sorted(batches)]
    assert sorted(order) == sorted(s.name for s in sets)
    assert sorted(batches) == list(range(1, len(sets) + 1))
    assert _succeeded(out) == sorted(batches)  # one succeeded run per batch, none twice
    reference = tmp_path / "sequential"
    _sequential(sets, order, reference)
    for table in DATA_TABLES:
        assert rows(out, table) == rows(reference, table), table
    silver = rows(out, "silver/stocks")
    assert len({r["stock_id"] for r in silver}) == len(silver)


@pytest.mark.slow
def test_writers_on_different_files_equal_a_sequential_run(
    input_sets: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "lake"
    procs = [_start(s, out) for s in input_sets]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_stdout, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr
    again = cli_process(*_all_args(input_sets, out))
    assert again.returncode == 0, again.stderr
    assert "nothing new to ingest" in again.stdout
    _assert_equal_to_sequential(out, input_sets, tmp_path)


@pytest.mark.slow
def test_writers_marking_rows_equal_a_sequential_run_that_rewrites(
    input_sets: list[Path], tmp_path: Path
) -> None:
    """The same with silver's deletion vectors and gold's increments forced: the marks, the
    vector files and gold's recorded silver versions hold under any interleaving, and equal
    what a sequential run writing files whole gives."""
    config = tmp_path / "marks.toml"
    config.write_text('[engine]\nsilver_write = "mark"\ngold_write = "increment"\n')
    out = tmp_path / "lake"
    procs = [_start(s, out, "--config", str(config)) for s in input_sets]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_stdout, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr
    for table in ("silver/stocks", "gold/stock_fund_holdings"):
        dt = DeltaTable(str(out / table))
        assert "deletionVectors" in (dt.protocol().reader_features or []), table
    _assert_equal_to_sequential(out, input_sets, tmp_path)


@pytest.mark.slow
def test_writers_on_the_same_files_ingest_them_once(input_sets: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "lake"
    procs = [_start(input_sets[0], out) for _ in range(WRITERS)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_stdout, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr
    # exactly one writer ingested the files; each other one was told another writer took them
    # (when it read them before that writer committed) or found nothing new (when after)
    outputs = [stdout for stdout, _ in results]
    wrote = [o for o in outputs if "rows written" in o]
    assert len(wrote) == 1, outputs
    left = [o for o in outputs if o not in wrote]
    assert all("ingested by another writer" in o or "nothing new to ingest" in o for o in left)
    assert _batches(out) == {1: {input_sets[0].name}}
    reference = tmp_path / "once"
    _sequential(input_sets, [input_sets[0].name], reference)
    for table in DATA_TABLES:
        assert rows(out, table) == rows(reference, table), table


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_one_writer_killed_midway_then_a_final_run(
    seed: int, input_sets: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "lake"
    rng = random.Random(seed)
    victim = rng.randrange(WRITERS)
    procs = [_start(s, out) for s in input_sets]
    time.sleep(rng.uniform(0.5, 3.0))
    procs[victim].send_signal(signal.SIGKILL)
    for i, proc in enumerate(procs):
        _stdout, stderr = proc.communicate(timeout=300)
        if i != victim:
            assert proc.returncode == 0, stderr
    # a final run over every input finishes whatever the killed writer left
    final = cli_process(*_all_args(input_sets, out))
    assert final.returncode == 0, final.stderr
    _assert_equal_to_sequential(out, input_sets, tmp_path)
