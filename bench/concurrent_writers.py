"""Several writers on one lakehouse at once, against the same runs one after the other.

    .venv/bin/python bench/concurrent_writers.py                 # 4 writers x 250k stocks
    .venv/bin/python bench/concurrent_writers.py --writers 2 --stocks 500000 --pairs 5

Each writer is a `digital-finance run` process on its own generated data set (keys overlap
between sets, as real feeds do). A pair is: all writers started together into a fresh
lakehouse, timed until the last exits; then the same runs one after the other into another
fresh lakehouse. Printed: the median wall of each over `--pairs` pairs, the spread and the
ratio; every pair's two lakehouses are checked to hold the same row counts.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"
CLI = str(Path(sys.executable).parent / "digital-finance")
sys.path.insert(0, str(ROOT / "src"))


def _sets(writers: int, stocks: int, seed: int) -> list[Path]:
    from digital_finance.generate import generate

    sets = []
    for i in range(writers):
        folder = CACHE / f"concurrent-s{stocks}-seed{seed + i}"
        if not (folder / "expected.json").exists():
            print(f"generating {folder.name}", flush=True)
            generate(folder, stocks, stocks // 10, seed=seed + i)
        sets.append(folder)
    return sets


def _command(data: Path, out: Path) -> list[str]:
    return [CLI, "run", "--stocks", str(data / "stocks"), "--funds", str(data / "mutual_funds"),
            "--output", str(out)]  # fmt: skip


def _counts(out: Path) -> dict[str, int]:
    from digital_finance import Lakehouse

    return {name: info.rows for name, info in Lakehouse(out).tables().items()
            if not name.startswith("_system")}  # fmt: skip


def _together(sets: list[Path], out: Path) -> float:
    started = time.perf_counter()
    procs = [subprocess.Popen(_command(s, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for s in sets]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(err)
    return time.perf_counter() - started


def _one_after_another(sets: list[Path], out: Path) -> float:
    started = time.perf_counter()
    for s in sets:
        subprocess.run(_command(s, out), check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--stocks", type=int, default=250_000, help="stock records per writer")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=300)
    args = parser.parse_args()
    sets = _sets(args.writers, args.stocks, args.seed)
    work = CACHE / "concurrent-work"
    together, sequential = [], []
    for pair in range(args.pairs):
        shutil.rmtree(work, ignore_errors=True)
        together.append(_together(sets, work / "together"))
        sequential.append(_one_after_another(sets, work / "sequential"))
        same = _counts(work / "together") == _counts(work / "sequential")
        print(f"pair {pair + 1}: together {together[-1]:.2f} s, one after another "
              f"{sequential[-1]:.2f} s, same row counts: {same}", flush=True)  # fmt: skip
        if not same:
            raise SystemExit("the lakehouses differ")
    ratios = [s / t for s, t in zip(sequential, together, strict=True)]
    print(
        f"{args.writers} writers x {args.stocks:,} stocks + {args.stocks // 10:,} holdings: "
        f"together median {statistics.median(together):.2f} s "
        f"({min(together):.2f}-{max(together):.2f}), one after another median "
        f"{statistics.median(sequential):.2f} s ({min(sequential):.2f}-{max(sequential):.2f}); "
        f"sequential / together median {statistics.median(ratios):.2f}x "
        f"({min(ratios):.2f}-{max(ratios):.2f}), {args.pairs} pairs"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
