"""Peak memory and wall time of `digital-finance run` on hostile inputs, one process each.

Each case is made in a temporary folder, run once as a fresh process on a fresh lakehouse,
and measured by the kernel's own accounting (`wait4`: peak RSS of the process). A normal
1,000-line file is the baseline. The figures go to docs/PERFORMANCE.md ("Hostile input").

    .venv/bin/python bench/hostile_inputs.py
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

GOOD = (
    '{"stock_id": %d, "company_id": 7, "symbol": "AAA", "price": "1.5", '
    '"timestamp": "2024-03-15T14:30:00Z"}\n'
)
MIB = 1 << 20


def _baseline(folder: Path) -> Path:
    path = folder / "normal.jsonl"
    path.write_text("".join(GOOD % i for i in range(1, 1001)))
    return path


def _long_line(folder: Path) -> Path:
    path = folder / "long.jsonl"
    with path.open("wb") as f:
        f.write((GOOD % 1).encode() + b'{"stock_id": 2, "x": "')
        for _ in range(200):
            f.write(b"a" * MIB)
        f.write(b'"}\n' + (GOOD % 3).encode())
    return path


def _bomb(block: bytes, name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(gzip.compress(block, compresslevel=9) * 4096)  # inflates to 4 GiB
        return path

    return make


def _blank_lines(folder: Path) -> Path:
    path = folder / "blank.jsonl"
    with path.open("wb") as f:
        for _ in range(300):
            f.write(b"\n" * MIB)
        f.write((GOOD % 1).encode())
    return path


def _deep(folder: Path) -> Path:
    path = folder / "deep.jsonl"
    path.write_text(GOOD.replace("}\n", ', "x": ' + "[" * 10_000 + "]" * 10_000 + "}\n") % 1)
    return path


def _array(count: int, name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        with path.open("w") as f:
            f.write("[\n" + ",\n".join(GOOD.strip() % i for i in range(1, count + 1)) + "\n]\n")
        return path

    return make


CASES: list[tuple[str, Callable[[Path], Path]]] = [
    ("1,000 normal lines (baseline)", _baseline),
    ("one 200 MiB line among two records", _long_line),
    ("4 MB gzip of zeros, inflating to 4 GiB", _bomb(bytes(MIB), "zeros.json.gz")),
    ("4 MB gzip of newlines, inflating to 4 GiB", _bomb(b"\n" * MIB, "newlines.json.gz")),
    ("300 MiB of blank lines, then a record", _blank_lines),
    ("a record nested 10,000 deep", _deep),
    ("JSON array of 60 MiB (under the 64 MiB limit)", _array(580_000, "array60.json")),
    ("JSON array of 80 MiB (over the limit)", _array(780_000, "array80.json")),
]


def _measure(path: Path, lake: Path) -> tuple[int, float, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digital_finance",
            "run",
            "--stocks",
            str(path),
            "--output",
            str(lake),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, time.perf_counter() - started


def main() -> None:
    """Print one row per case: exit code, peak RSS, wall time."""
    argparse.ArgumentParser(description=__doc__).parse_args()
    print(f"{'case':45} {'exit':>4} {'peak RSS':>10} {'wall':>7}")
    for name, make in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            path = make(Path(tmp))
            code, peak_mib, wall = _measure(path, Path(tmp) / "lake")
        print(f"{name:45} {code:>4} {peak_mib:>7.0f} MiB {wall:>6.2f} s", flush=True)


if __name__ == "__main__":
    main()
