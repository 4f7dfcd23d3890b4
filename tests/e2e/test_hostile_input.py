"""Hostile and unlucky inputs, each run as a real process under a 1 GiB memory ceiling.

Every case ends with exit 0 (the bad record is in quarantine with a reason) or exit 2 (a
message that names the file and the fix), and the process's peak RSS, as the kernel counted
it (`wait4`), stays below the ceiling. A watchdog kills a run that crosses it, so a
regression fails the test instead of taking the machine down.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

CEILING = 1 << 30
GOOD = [
    '{"stock_id": 1, "company_id": 101, "symbol": "AAA", "price": 10.5, '
    '"timestamp": "2024-03-15T14:30:00Z"}',
    '{"stock_id": 2, "company_id": 102, "symbol": "BBB", "price": "20.25", '
    '"timestamp": "2024-03-15T14:30:00Z"}',
]


@dataclass(frozen=True)
class Finished:
    code: int
    output: str
    peak_rss: int  # bytes


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_bounded(*args: str, prefix: tuple[str, ...] = (), timeout: float = 120) -> Finished:
    """The CLI as a process; its exit code, output and peak RSS, killed past the ceiling."""
    with open(os.devnull, "rb") as stdin:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "digital_finance", *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "COLUMNS": "400"},  # one message, one line: easy to match
        )
    crossed: list[int] = []
    done = threading.Event()

    def watch() -> None:
        started = time.monotonic()
        while not done.wait(0.02):
            rss = _rss(proc.pid)
            if rss > CEILING or time.monotonic() - started > timeout:
                crossed.append(rss)
                proc.kill()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert proc.stdout is not None
    output = proc.stdout.read().decode("utf-8", errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    watcher.join()
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
    assert not crossed, f"killed at {crossed[0] / 2**20:.0f} MiB or after {timeout} s: {output}"
    return Finished(proc.returncode, output, usage.ru_maxrss * 1024)


def _quarantine(root: Path) -> list[tuple[int, str, int]]:
    from deltalake import DeltaTable

    rows = DeltaTable(str(root / "quarantine" / "stocks")).to_pyarrow_table(
        columns=["line_number", "reason", "raw"]
    )
    found = [(r["line_number"], r["reason"], len(r["raw"].encode())) for r in rows.to_pylist()]
    return sorted(found)


def _silver_ids(root: Path) -> list[int]:
    from deltalake import DeltaTable

    ids = DeltaTable(str(root / "silver" / "stocks")).to_pyarrow_table(columns=["stock_id"])
    return sorted(ids.column("stock_id").to_pylist())


def _refused(result: Finished, *words: str) -> None:
    assert result.code == 2, result.output
    assert "Traceback" not in result.output, result.output
    for word in words:
        assert word in result.output, result.output
    assert result.peak_rss < CEILING


def _bomb(path: Path, block: bytes, copies: int) -> Path:
    # gzip members concatenated: one compressed block, repeated, is a valid gzip stream
    path.write_bytes(gzip.compress(block, compresslevel=9) * copies)
    return path


def test_a_device_that_never_ends_is_refused(tmp_path: Path) -> None:
    _refused(run_bounded("run", "--stocks", "/dev/zero", "--output", str(tmp_path / "l")),
             "/dev/zero", "character device")  # fmt: skip


def test_a_fifo_without_a_writer_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    result = run_bounded("run", "--stocks", str(fifo), "--output", str(tmp_path / "l"), timeout=30)
    _refused(result, "FIFO")


def test_a_loop_of_symbolic_links_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.json").symlink_to(tmp_path / "b.json")
    (tmp_path / "b.json").symlink_to(tmp_path / "a.json")
    result = run_bounded("run", "--stocks", str(tmp_path / "a.json"), "--output",
                         str(tmp_path / "l"))  # fmt: skip
    _refused(result, "loop of symbolic links")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_an_unreadable_file_is_refused_with_its_fix(tmp_path: Path) -> None:
    locked = tmp_path / "locked.json"
    locked.write_text(GOOD[0] + "\n")
    locked.chmod(0)
    # root reads any file: drop the capabilities that let it, so the mode counts
    no_override = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
    result = run_bounded("run", "--stocks", str(locked), "--output", str(tmp_path / "l"),
                         prefix=no_override if os.geteuid() == 0 else ())  # fmt: skip
    _refused(result, "Permission denied", "permissions")


def test_a_gzip_bomb_of_zeros_is_refused(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "zeros.json.gz", bytes(1 << 20), 4096)  # 4 MB → 4 GiB
    result = run_bounded("run", "--stocks", str(bomb), "--output", str(tmp_path / "l"))
    _refused(result, "decompression bomb", "max_inflate_ratio")
    assert not (tmp_path / "l" / "bronze" / "stocks").exists()  # nothing was committed


def test_a_gzip_bomb_of_newlines_is_refused(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "newlines.json.gz", b"\n" * (1 << 20), 4096)
    result = run_bounded("run", "--stocks", str(bomb), "--output", str(tmp_path / "l"))
    _refused(result, "decompression bomb")


def test_a_200_mb_line_is_quarantined_by_its_first_bytes(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    with path.open("wb") as f:
        f.write((GOOD[0] + "\n").encode())
        f.write(b'{"stock_id": 3, "x": "')
        for _ in range(200):
            f.write(b"a" * (1 << 20))
        f.write(b'"}\n')
        f.write((GOOD[1] + "\n").encode())
    root = tmp_path / "l"
    result = run_bounded("run", "--stocks", str(path), "--output", str(root))
    assert result.code == 0, result.output
    assert result.peak_rss < CEILING
    assert _quarantine(root) == [(2, "record_too_large", 4096)]
    assert _silver_ids(root) == [1, 2]


def test_valid_json_nested_10000_deep_is_quarantined_as_too_deep(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    deep = GOOD[0][:-1] + ', "x": ' + "[" * 10_000 + "]" * 10_000 + "}"
    path.write_text(deep + "\n" + GOOD[1] + "\n")
    root = tmp_path / "l"
    result = run_bounded("run", "--stocks", str(path), "--output", str(root))
    assert result.code == 0, result.output
    assert [(n, r) for n, r, _ in _quarantine(root)] == [(1, "nesting_too_deep")]
    assert _silver_ids(root) == [2]


def test_300_mb_of_blank_lines_cost_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    blanks = 300 << 20
    with path.open("wb") as f:
        for _ in range(300):
            f.write(b"\n" * (1 << 20))
        f.write(("\n".join(GOOD) + "\n").encode())
    root = tmp_path / "l"
    result = run_bounded("run", "--stocks", str(path), "--output", str(root))
    assert result.code == 0, result.output
    assert result.peak_rss < CEILING
    from deltalake import DeltaTable

    bronze = DeltaTable(str(root / "bronze" / "stocks")).to_pyarrow_table(columns=["line_number"])
    assert sorted(bronze.column("line_number").to_pylist()) == [blanks + 1, blanks + 2]


def test_a_json_array_over_its_limit_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "array.json"
    with path.open("w") as f:
        f.write("[\n")
        f.write(",\n".join(GOOD[0].replace('"stock_id": 1', f'"stock_id": {i}')
                           for i in range(1, 700_001)))  # fmt: skip
        f.write("\n]\n")
    assert path.stat().st_size > 64 << 20
    result = run_bounded("run", "--stocks", str(path), "--output", str(tmp_path / "l"))
    _refused(result, "one JSON array", "jq -c", "max_array_bytes")
