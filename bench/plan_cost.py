"""How a stream's plan costs as its history grows: a day of 1 s triggers is 86,400 batches.

    .venv/bin/python bench/plan_cost.py                 # 600, 3,600, 21,600, 86,400 batches
    .venv/bin/python bench/plan_cost.py --partitions 4 --batches 600 86400

A real lakehouse gets `--batches` stream batches of `--partitions` Kafka partitions in its
`_system` tables (their rows written directly, as many batches' plan and run rows per
commit as fit), then a runner plans the next batch from them, as a stream does each
trigger: its history read (incremental after the first) and `StreamIntake.plan`. Printed:
per history size, the median of `--repeat` plans (each one batch later than the last) and
the time of the first, whole read.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def _history_rows(first: int, last: int, partitions: int, per_batch: int) -> tuple[object, object]:
    import pyarrow as pa

    from digital_finance.lakehouse import system_rows
    from digital_finance.runs.plan import Batch, PlannedFile
    from digital_finance.runs.report import BatchReport
    from digital_finance.sources.discovery import InputFile

    plans, runs = [], []
    now = datetime.now(UTC)
    for b in range(first, last + 1):
        parts = tuple(
            PlannedFile("stocks", p, InputFile(f"steady/{p}", b * per_batch, 0),
                        start=(b - 1) * per_batch, first_line=(b - 1) * per_batch,
                        sha256=f"{b:064x}", source="kafka")
            for p in range(partitions)
        )  # fmt: skip
        plans.append(system_rows.plan_rows(Batch(b, parts), f"run{b}", now))
        report = BatchReport(b, f"run{b}", "succeeded", files=partitions)
        runs.append(system_rows.run_row(report, now, now, "UTC", "embedded"))
    return pa.concat_tables(plans), pa.concat_tables(runs, promote_options="default")


def _grow(root: Path, done: int, target: int, partitions: int) -> None:
    from deltalake import write_deltalake

    step = 20_000
    for first in range(done + 1, target + 1, step):
        last = min(target, first + step - 1)
        plans, runs = _history_rows(first, last, partitions, 5_000)
        write_deltalake(str(root / "_system" / "batches"), plans, mode="append")
        write_deltalake(
            str(root / "_system" / "pipeline_runs"), runs, mode="append", schema_mode="merge"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[600, 3_600, 21_600, 86_400])
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    from digital_finance import Lakehouse
    from digital_finance.runs.intake import StreamIntake
    from digital_finance.sources.stream_records import records_table

    work = Path(tempfile.mkdtemp(prefix="plan-cost-"))
    done = 0
    heads = ("batches in history", "planned rows", "first read", "plan p50", "plan max")
    print(" ".join(f"{h:>{w}}" for h, w in zip(heads, (18, 12, 10, 9, 9), strict=True)))
    for target in sorted(args.batches):
        _grow(work, done, target, args.partitions)
        done = target
        lake = Lakehouse(work)
        runner = lake._batch_runner()
        clock = time.perf_counter()
        past = runner.history()
        first = time.perf_counter() - clock
        times = []
        for n in range(args.repeat):
            position = (target + 1 + n) * 5_000
            held = records_table([("stocks", f"steady/{p}", position + i, b"{}")
                                  for p in range(args.partitions) for i in range(3)])  # fmt: skip
            clock = time.perf_counter()
            past = runner.history()
            StreamIntake("kafka", held).plan(past, None, lambda _: False)
            times.append(time.perf_counter() - clock)
        p50, worst = statistics.median(times) * 1000, max(times) * 1000
        print(f"{target:>18,} {len(past.planned):>12,} {first * 1000:>8.0f} ms"
              f" {p50:>6.1f} ms {worst:>6.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
