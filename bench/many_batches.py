"""Many small batches: does the hundredth cost what the first did, with and without maintenance?

    .venv/bin/python bench/many_batches.py                       # 400 batches, 100k stocks
    .venv/bin/python bench/many_batches.py --batches 1000 --maintain-every 50

A stream with a 1 s trigger commits a version to every table and a file to most of them once
a second. This harness builds two copies of one lakehouse (100k generated stocks and 10k
holdings by default) and, in one long-running process through the library API, gives both
the same `--batches` batches of `--records` records, alternating A B A B so that both meet
the same machine: copy A is maintained (`Lakehouse.maintain`: compaction, checkpoints)
every `--maintain-every` batches, as `digital-finance stream` does on its timer; copy B is
never maintained. Each batch is timed from the call to its return; maintenance is timed
apart.

Printed: for each copy, the median batch time of the first and of the last `--window`
batches and their ratio (1.0: no growth), the files in bronze/stocks at the end, and the
time maintenance took; also written to `bench/results/many_batches.json`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from micro_batch import CACHE, RESULTS, Increments, build_lake  # noqa: E402

from digital_finance import Lakehouse  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stocks", type=int, default=100_000, help="stocks in the lakehouse")
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--records", type=int, default=1_000, help="records per batch")
    parser.add_argument("--maintain-every", type=int, default=50, help="batches between passes")
    parser.add_argument("--window", type=int, default=50, help="batches compared, first/last")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    template = build_lake(args.stocks, args.stocks // 10, args.seed)
    work = CACHE / "many-work"
    shutil.rmtree(work, ignore_errors=True)
    copies = {"maintained": work / "maintained", "never maintained": work / "plain"}
    for folder in copies.values():
        shutil.copytree(template, folder)
    increments = Increments(copies["maintained"], args.seed)
    lakes = {name: Lakehouse(folder) for name, folder in copies.items()}
    times: dict[str, list[float]] = {name: [] for name in lakes}
    upkeep: list[float] = []
    for i in range(args.batches):
        stocks, funds = increments.write(work / "in" / f"b{i:05d}", args.records)
        for name, lake in lakes.items():
            started = time.perf_counter()
            report = lake.ingest_files(stocks=[str(stocks)], funds=[str(funds)])
            times[name].append(time.perf_counter() - started)
            assert len(report.batches) == 1 and report.ok, report
        if (i + 1) % args.maintain_every == 0:
            started = time.perf_counter()
            lakes["maintained"].maintain()
            upkeep.append(time.perf_counter() - started)
        if (i + 1) % 50 == 0:
            print(f"  {i + 1} batches", flush=True)

    results = {}
    w = args.window
    for name, ts in times.items():
        first, last = statistics.median(ts[:w]), statistics.median(ts[-w:])
        files = len(list((copies[name] / "bronze" / "stocks").glob("*.parquet")))
        live = len(Lakehouse(copies[name]).read("bronze.stocks", columns=["_batch_id"]))
        results[name] = {
            "first_median_s": first,
            "last_median_s": last,
            "growth": last / first,
            "bronze_stock_parquet_files": files,
            "bronze_stock_rows": live,
        }
        print(
            f"{name:>16}: first {w} batches median {first * 1000:.0f} ms, last {w} "
            f"{last * 1000:.0f} ms ({last / first:.2f}x); bronze/stocks files on disk {files:,}",
            flush=True,
        )
    if upkeep:
        print(
            f"maintenance: {len(upkeep)} passes, median {statistics.median(upkeep):.2f} s "
            f"(min {min(upkeep):.2f}, max {max(upkeep):.2f})"
        )
    ratio = results["never maintained"]["last_median_s"] / results["maintained"]["last_median_s"]
    print(f"last {w} batches, never maintained / maintained: {ratio:.2f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "many_batches.json").write_text(
        json.dumps({"args": vars(args), "copies": results, "maintenance_s": upkeep}, indent=2)
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
