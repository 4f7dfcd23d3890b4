"""What one stream micro-batch costs, in a long-running process, beside another checkout.

    .venv/bin/python bench/stream_batch_cost.py                      # 20k records, 20 batches
    .venv/bin/python bench/stream_batch_cost.py --compare-src ../old/src --pairs 3

Batches of `--records` stock events (the latency benchmark's shape: ids cycling over
`--keys` stocks, so silver holds `--keys` rows and each batch replaces a share of them) go
through `Lakehouse.ingest_stream` into a fresh lakehouse, as a running stream hands them
over after each poll: plan, spool, stage, every table's commit, run log. No broker is
involved, so the figure is the pipeline's share of a stream's latency. Each run is its own
process; with `--compare-src`, runs of the other checkout's `src/` alternate with ours
(A B A B …). Printed: per run the median batch time (after `--warmup` batches), its steps,
and the ratio of the medians per pair; written to `bench/results/stream_batch_cost.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pairs import compared, write_results  # noqa: E402

RUN = r"""
import json, statistics, sys, time
from digital_finance import Lakehouse
from digital_finance.sources.stream_records import records_table

records, batches, warmup, keys, out = (*map(int, sys.argv[1:5]), sys.argv[5])
lake = Lakehouse(out)
stock = sent = position = 0
times, steps = [], {}
for number in range(batches + warmup):
    rows = []
    for i in range(records):
        stock = (stock + 1) % keys
        now = time.time_ns()
        value = (
            f'{{"stock_id": {stock + 1}, "company_id": {stock // 3 + 1}, "symbol": "S{stock}", '
            f'"price": "{10 + stock % 97}.{stock % 100:02d}", "volume": {sent % 1000}, '
            f'"exchange": "NYSE", "currency": "USD", "timestamp": {now // 1_000_000}}}'
        )
        rows.append(("stocks", f"steady/{i % 4}", position + i // 4, value.encode()))
        sent += 1
    position += records // 4 + 1
    table = records_table(rows)
    clock = time.perf_counter()
    report = lake.ingest_stream("kafka", table)
    seconds = time.perf_counter() - clock
    if number >= warmup:
        times.append(seconds)
        for step, took in report.batches[0].timings.items():
            steps.setdefault(step, []).append(took)
print(json.dumps({"median": statistics.median(times), "min": min(times), "max": max(times),
                  "steps": {k: statistics.median(v) for k, v in steps.items()}}))
"""


def one_run(src: Path, args: argparse.Namespace, out: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(args.records), str(args.batches), str(args.warmup),
         str(args.keys), str(out)],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(src)},
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the run of {src} failed:\n{done.stderr[-3000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="records per batch")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    parser.add_argument("--keys", type=int, default=50_000, help="distinct stock ids")
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--compare-src", metavar="DIR", help="another checkout's src/ (A/B)")
    args = parser.parse_args()
    ours: list[float] = []
    theirs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="stream-batch-cost-") as temp:
        for pair in range(args.pairs):
            if args.compare_src:
                other = one_run(Path(args.compare_src), args, Path(temp) / f"b{pair}")
                theirs.append(float(other["median"]))  # type: ignore[arg-type]
                print(f"pair {pair + 1}: {args.compare_src}: median {theirs[-1] * 1000:.0f} ms")
            mine = one_run(ROOT / "src", args, Path(temp) / f"a{pair}")
            ours.append(float(mine["median"]))  # type: ignore[arg-type]
            steps = mine["steps"]
            assert isinstance(steps, dict)
            shown = ", ".join(
                f"{k} {v * 1000:.0f}" for k, v in sorted(steps.items(), key=lambda kv: -kv[1])
            )
            print(
                f"pair {pair + 1}: ours: median {ours[-1] * 1000:.0f} ms per "
                f"{args.records:,}-record batch (steps, ms: {shown})",
                flush=True,
            )
    summary: dict[str, object] = {
        "records": args.records, "keys": args.keys, "batches": args.batches,
        "ours_median_seconds": ours,
    }  # fmt: skip
    if theirs:
        compared(summary, str(args.compare_src), theirs, ours)
    write_results("stream_batch_cost", summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
