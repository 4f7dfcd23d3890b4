"""Micro-batches into a large lakehouse: what one small batch costs, and how that grows.

    .venv/bin/python bench/micro_batch.py                      # 1M stocks + 100k holdings
    .venv/bin/python bench/micro_batch.py --sizes 100000 1000000 10000000 --batches 10
    .venv/bin/python bench/micro_batch.py --ways auto rewrite/whole --rounds 2   # A B A B

For each size the harness builds a lakehouse once (cached under `.cache/bench/lake-*`) from
generated data, copies it, and then, in one long-running process through the library API
(`digital_finance.Lakehouse`), ingests `--batches` batches of `--records` records each: a
mix of price updates of existing stocks (90%), new stocks (5%) and holding updates (5%),
written as one NDJSON file per dataset per batch. Every batch is timed from the call to its
return (plan, stage, commit of every table, run log). The CLI's wall time for one more batch
of the same shape is measured too (`digital-finance run`, a new process).

`--ways` names the ways silver and gold are written, as SILVER[/GOLD] (`[engine]
silver_write` and `gold_write`; `rewrite/whole` is how a batch was written before deletion
vectors); with more than one, each round runs them one after the other on fresh copies of
the lakehouse, and the ratio of each way's median to the first way's is printed per round.

Printed: per size, the median, p90, p99 (the largest of fewer than 100) and spread of the
batch times, the time per step of the median batch, and the CLI wall; also written to
`bench/results/micro_batch.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "src"))

from digital_finance import Lakehouse, RunConfig  # noqa: E402


def build_lake(stocks: int, funds: int, seed: int) -> Path:
    """A lakehouse holding the generated data set of that size (built once, then reused)."""
    lake = CACHE / f"lake-s{stocks}-f{funds}-seed{seed}"
    if (lake / "_system" / "pipeline_runs").exists():
        return lake
    data = CACHE / f"data-s{stocks}-f{funds}-seed{seed}"
    if not (data / "expected.json").exists():
        from digital_finance.generate import generate

        print(f"generating {stocks:,} stocks + {funds:,} holdings", flush=True)
        generate(data, stocks, funds, seed=seed)
    print(f"building {lake.name}", flush=True)
    shutil.rmtree(lake, ignore_errors=True)
    Lakehouse(lake).ingest_files(stocks=[str(data / "stocks")], funds=[str(data / "mutual_funds")])
    return lake


class Increments:
    """Batches of realistic small changes to the lakehouse's own keys."""

    def __init__(self, lake: Path, seed: int) -> None:
        opened = Lakehouse(lake)
        stock_columns = ["stock_id", "company_id", "symbol"]
        stocks = opened.read("silver.stocks", columns=stock_columns).to_pylist()
        holdings = opened.read("silver.mutual_funds", columns=["fund_id", "company_id"]).to_pylist()
        self.stocks = stocks
        self.holdings = holdings
        self.next_id = max(s["stock_id"] for s in stocks) + 1
        self.rng = random.Random(seed)
        self.clock = datetime(2031, 1, 1, tzinfo=UTC)

    def write(self, folder: Path, records: int) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        rng = self.rng
        self.clock += timedelta(seconds=1)
        at = self.clock.isoformat().replace("+00:00", "Z")
        stock_lines = []
        for _ in range(records * 90 // 100):
            s = rng.choice(self.stocks)
            stock_lines.append(_stock(s["stock_id"], s["company_id"], s["symbol"], rng, at))
        for _ in range(records * 5 // 100):
            company = rng.choice(self.stocks)["company_id"]
            stock_lines.append(_stock(self.next_id, company, f"N{self.next_id}", rng, at))
            self.next_id += 1
        fund_lines = []
        for _ in range(records - len(stock_lines)):
            h = rng.choice(self.holdings)
            record = {
                "fund_id": h["fund_id"],
                "company_id": h["company_id"],
                "holding_weight": f"{rng.randint(1, 9_999_999) / 100_000:.5f}",
                "nav": f"{rng.randint(1000, 99999) / 100:.2f}",
                "as_of": at,
            }
            fund_lines.append(json.dumps(record))
        stocks, funds = folder / "stocks.jsonl", folder / "funds.jsonl"
        stocks.write_text("\n".join(stock_lines) + "\n")
        funds.write_text("\n".join(fund_lines) + "\n")
        return stocks, funds


def _stock(stock_id: int, company: int, symbol: str, rng: random.Random, at: str) -> str:
    record = {
        "stock_id": stock_id,
        "company_id": company,
        "symbol": symbol,
        "price": f"{rng.randint(100, 99_999_999) / 10_000:.4f}",  # text: never a float
        "volume": rng.randint(0, 10**6),
        "timestamp": at,
    }
    return json.dumps(record)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_size(stocks: int, funds: int, args: argparse.Namespace, way: str) -> dict[str, object]:
    template = build_lake(stocks, funds, args.seed)
    # a new folder each time: a lakehouse copied to the same path can reuse the inodes that
    # tell this process's kept tables apart
    work = CACHE / f"micro-work-{time.time_ns()}"
    shutil.rmtree(work, ignore_errors=True)
    lake_dir = work / "lake"
    shutil.copytree(template, lake_dir)
    increments = Increments(lake_dir, args.seed)
    silver, _, gold = way.partition("/")
    gold = gold or "auto"
    lake = Lakehouse(
        lake_dir, dataclasses.replace(RunConfig(), silver_write=silver, gold_write=gold)
    )
    config = work / "engine.toml"
    config.write_text(
        f'[engine]\nsilver_write = "{silver}"\ngold_write = "{gold}"\n', encoding="utf-8"
    )
    times: list[float] = []
    steps: list[dict[str, float]] = []
    for i in range(args.warmup + args.batches):
        s, f = increments.write(work / "in" / f"b{i:04d}", args.records)
        started = time.perf_counter()
        report = lake.ingest_files(stocks=[str(s)], funds=[str(f)])
        seconds = time.perf_counter() - started
        assert len(report.batches) == 1 and report.ok, report
        if i >= args.warmup:
            times.append(seconds)
            steps.append(report.batches[0].timings)
    median = statistics.median(times)
    median_steps = steps[min(range(len(times)), key=lambda k: abs(times[k] - median))]
    cli = []
    for i in range(args.cli_runs):
        s, f = increments.write(work / "in" / f"cli{i}", args.records)
        cmd = [str(Path(sys.executable).parent / "digital-finance"), "run", "--stocks", str(s),
               "--funds", str(f), "--output", str(lake_dir), "--config", str(config)]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        cli.append(time.perf_counter() - started)
        assert done.returncode == 0, done.stderr
    result = {
        "ways": way,
        "silver_stocks": len(increments.stocks),
        "holdings": len(increments.holdings),
        "records_per_batch": args.records,
        "batches": len(times),
        "median_s": median,
        "p90_s": _quantile(times, 0.9),
        "p99_s": _quantile(times, 0.99),
        "min_s": min(times),
        "max_s": max(times),
        "median_batch_steps_s": median_steps,
        "cli_wall_median_s": statistics.median(cli) if cli else None,
        "cli_wall_s": cli,
    }
    shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1_000_000],
        help="stock records generated per lakehouse (holdings: a tenth)",
    )
    parser.add_argument("--records", type=int, default=1_000, help="records per batch")
    parser.add_argument("--batches", type=int, default=30, help="timed batches per size")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--cli-runs", type=int, default=3, help="CLI runs of one batch each")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--ways", nargs="+", default=["auto"], metavar="SILVER[/GOLD]",
                        help="ways of writing silver and gold, run in turn each round")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="rounds of every way")
    args = parser.parse_args()
    results = []
    for size in args.sizes:
        for _ in range(args.rounds):
            first = None
            for way in args.ways:
                r = bench_size(size, size // 10, args, way)
                results.append(r)
                first = first if first is not None else r
                _print(r, float(r["median_s"]) / float(first["median_s"]))  # type: ignore[arg-type]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "micro_batch.json").write_text(json.dumps(results, indent=2))
    return 0


def _print(r: dict[str, object], ratio: float) -> None:
    steps = ", ".join(f"{k} {v * 1000:.0f}" for k, v in r["median_batch_steps_s"].items())  # type: ignore[attr-defined]
    print(
        f"[{r['ways']}, {ratio:.2f}x the first way] "
        f"{r['silver_stocks']:>10,} stocks in silver, {r['holdings']:,} holdings: "
        f"{r['records_per_batch']:,}-record batch median {r['median_s'] * 1000:.0f} ms, "  # type: ignore[operator]
        f"p90 {r['p90_s'] * 1000:.0f} ms, p99 {r['p99_s'] * 1000:.0f} ms "  # type: ignore[operator]
        f"(min {r['min_s'] * 1000:.0f}, max {r['max_s'] * 1000:.0f}, n={r['batches']}); "  # type: ignore[operator]
        f"CLI wall median {_seconds(r['cli_wall_median_s'])}\n    median batch, ms: {steps}",
        flush=True,
    )


def _seconds(value: object) -> str:
    return "not run (--cli-runs 0)" if value is None else f"{float(value):.2f} s"  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
