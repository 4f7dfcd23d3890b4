"""Side-by-side benchmark: `digital-finance run` against the seed's PySpark job, same files.

    .venv/bin/python bench/run_benchmark.py                  # 1M stocks + 100k funds, 3 runs each
    .venv/bin/python bench/run_benchmark.py --big            # also 10M + 1M, ours only
    .venv/bin/python bench/run_benchmark.py --skip-spark --engine-cmd 'my-cmd {stocks} {out}'

The input is generated once per (size, seed) into `.cache/bench/` and reused. Every run writes
to a fresh output folder. For each run the harness measures

* wall time: from start until the command exits;
* CPU time: user + system of the whole process tree, taken from the kernel's accounting of
  reaped children (the harness makes itself a child subreaper, so the JVM that PySpark starts
  as a grandchild is accounted even if it outlives its parent);
* peak memory: the largest sum of RSS over every process of the tree, sampled every 50 ms.

Each figure is the median over `--repeat` runs. The table goes to stdout and to
`bench/results/latest.md` (raw runs to `latest.json`).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import ctypes
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
CACHE = ROOT / ".cache" / "bench"
RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent
DEFAULT_ENGINE_CMD = (
    f"{shlex.quote(str(VENV_BIN / 'digital-finance'))} run "
    "--stocks {stocks} --funds {funds} --output {out}"
)
SAMPLE_SECONDS = 0.05
_PR_SET_CHILD_SUBREAPER = 36


# --------------------------------------------------------------------------------------------
# Measuring one command


@dataclass
class Run:
    """The figures of one run of one command."""

    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    returncode: int
    log: str


def _become_subreaper() -> bool:
    """Orphaned descendants are re-parented to us, so we reap them and count their CPU."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _tree_rss(me: psutil.Process) -> int:
    total = 0
    for proc in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            total += proc.memory_info().rss
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(cmd: list[str], log_path: Path) -> Run:
    """Run `cmd` to completion and measure its whole process tree."""
    me = psutil.Process()
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(me))
            stop.wait(SAMPLE_SECONDS)

    cpu_before = _children_cpu()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        sampler = threading.Thread(target=sample, daemon=True)
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        sampler.start()
        returncode = proc.wait()
        wall = time.perf_counter() - started
        # Reap whatever the command left behind (a JVM shutting down, re-parented to us).
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        stop.set()
        sampler.join()
    cpu = _children_cpu() - cpu_before
    return Run(wall, cpu, peak, returncode, str(log_path))


# --------------------------------------------------------------------------------------------
# Input data


def ensure_data(stocks: int, funds: int, seed: int) -> Path:
    """Generate the input once per (size, seed); later calls reuse it."""
    folder = CACHE / f"data-s{stocks}-f{funds}-seed{seed}"
    expected = folder / "expected.json"
    if expected.exists():
        report = json.loads(expected.read_text(encoding="utf-8"))
        if report.get("records") == {"stocks": stocks, "mutual_funds": funds}:
            return folder
    _log(f"generating {stocks:,} stocks + {funds:,} funds into {folder} ...")
    started = time.perf_counter()
    cli = VENV_BIN / "digital-finance"
    cli_ready = (
        cli.exists()
        and subprocess.run(
            [str(cli), "generate", "--help"], capture_output=True, check=False
        ).returncode
        == 0
    )
    if cli_ready:
        cmd = [str(cli), "generate", "--stocks", str(stocks), "--funds", str(funds)]
        subprocess.run([*cmd, "--out", str(folder), "--seed", str(seed)], check=True)
    else:  # the CLI is not there yet: the same generator, imported
        from digital_finance.generate import generate

        generate(folder, stocks, funds, seed=seed)
    _log(f"generated in {time.perf_counter() - started:.1f}s")
    return folder


# --------------------------------------------------------------------------------------------
# The contenders


@dataclass
class Contender:
    """One command timed on one data set."""

    tool: str
    stocks: int
    funds: int
    runs: list[Run] = field(default_factory=list)

    @property
    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.returncode == 0]

    def median(self, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.ok_runs]
        return statistics.median(values) if values else None


def _fill(template: str, **values: str) -> list[str]:
    return [token.format(**values) for token in shlex.split(template)]


def bench(
    tool: str,
    template: list[str] | str,
    data: Path,
    stocks: int,
    funds: int,
    repeat: int,
    warmup: int = 0,
) -> Contender:
    """Run one command `warmup` times untimed, then `repeat` times, on fresh output folders.

    The warm-up runs put the input files and the tool's own code in the page cache, so the
    first timed run is not the only one that reads them from disk.
    """
    contender = Contender(tool, stocks, funds)
    slug = re.sub(r"[^a-z0-9]+", "-", tool.lower()).strip("-")
    for i in range(1 - warmup, repeat + 1):
        out = CACHE / "out" / f"{slug}-{stocks}-{i}"
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        values = {
            "stocks": str(data / "stocks" / "*"),
            "funds": str(data / "mutual_funds" / "*"),
            "out": str(out),
        }
        if isinstance(template, str):
            cmd = _fill(template, **values)
        else:
            cmd = [part.format(**values) for part in template]
        label = f"run {i}/{repeat}" if i > 0 else "warm-up (not counted)"
        _log(f"{tool} on {stocks:,} stocks, {label}: {shlex.join(cmd)}")
        log = RESULTS / "logs" / f"{slug}-{stocks}-{i}.log"
        run = measure(cmd, log)
        if i > 0:
            contender.runs.append(run)
        status = "ok" if run.returncode == 0 else f"FAILED (exit {run.returncode}, see {log})"
        _log(
            f"  wall {run.wall_s:.2f}s  cpu {run.cpu_s:.2f}s  "
            f"peak {run.peak_rss_bytes / 2**20:.0f} MiB  {status}"
        )
        shutil.rmtree(out, ignore_errors=True)
    return contender


# --------------------------------------------------------------------------------------------
# Reporting


def _fmt(value: float | None, unit: str = "") -> str:
    return "failed" if value is None else f"{value:,.2f}{unit}"


def _mib(value: float | None) -> str:
    return "failed" if value is None else f"{value / 2**20:,.0f}"


def _java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    except OSError:
        return "none"
    first = (out.stderr or out.stdout).splitlines()
    return first[0].strip() if first else "unknown"


def _pyspark_version() -> str:
    try:
        from importlib.metadata import version

        return version("pyspark")
    except Exception:
        return "not installed"


def render(contenders: list[Contender]) -> str:
    """The results as a markdown page."""
    ours: dict[int, Contender] = {}  # the first of ours per size: the embedded engine
    for c in contenders:
        if c.tool.startswith("digital-finance") and c.stocks not in ours:
            ours[c.stocks] = c
    lines = [
        "# Benchmark: digital-finance vs the seed's PySpark job",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {platform.platform()}",
        f"- python {platform.python_version()}, pyspark {_pyspark_version()}, {_java_version()}",
        "- each figure is the median over the runs of that row; CPU = user+sys of the whole "
        "process tree; peak = max over time of the summed RSS of the tree, sampled every 50 ms",
        "- at the 1M size each tool first ran untimed (`--warmup`), so every timed run finds "
        "the input in the page cache",
        "",
        "| tool | stocks | funds | wall (s) | CPU (s) | peak RSS (MiB) | records/s | "
        "runs ok | wall vs ours |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in contenders:
        wall = c.median("wall_s")
        rate = f"{(c.stocks + c.funds) / wall:,.0f}" if wall else "-"
        ratio = "-"
        base = ours.get(c.stocks)
        base_wall = base.median("wall_s") if base else None
        if base is not None and base is not c and wall and base_wall:
            ratio = f"{wall / base_wall:.1f}x"
        elif base is c and wall:
            ratio = "1.0x"
        lines.append(
            f"| {c.tool} | {c.stocks:,} | {c.funds:,} | {_fmt(wall)} | "
            f"{_fmt(c.median('cpu_s'))} | {_mib(c.median('peak_rss_bytes'))} | {rate} | "
            f"{len(c.ok_runs)}/{len(c.runs)} | {ratio} |"
        )
    spark = next((c for c in contenders if c.tool.startswith("PySpark")), None)
    if spark is not None and spark.stocks in ours:
        ours_wall = ours[spark.stocks].median("wall_s")
        spark_wall = spark.median("wall_s")
        if ours_wall and spark_wall:
            lines += ["", f"**PySpark wall / ours: {spark_wall / ours_wall:.2f}**"]
    lines += [
        "",
        "`wall vs ours` is the tool's median wall time divided by ours on the same input "
        "(above 1 means ours is faster). The PySpark job is the seed's plain transformation "
        "(`bench/seed_pyspark_job.py`): it does less than ours (no contract checks, no "
        "quarantine, no latest-wins de-duplication, Parquet instead of Delta).",
        "",
    ]
    return "\n".join(lines)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stocks", type=int, default=1_000_000, help="stock records")
    parser.add_argument("--funds", type=int, default=100_000, help="fund holding records")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool (median is shown)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed runs per tool before the timed ones (1M)"
    )
    parser.add_argument("--skip-spark", action="store_true", help="time only our command")
    parser.add_argument("--skip-ours", action="store_true", help="time only the PySpark job")
    parser.add_argument(
        "--spark-engine",
        action="store_true",
        help="also time our pipeline on Spark (`run --engine spark`, local[2])",
    )
    parser.add_argument(
        "--big", action="store_true", help="also run ours on --big-stocks/--big-funds"
    )
    parser.add_argument("--big-stocks", type=int, default=10_000_000)
    parser.add_argument("--big-funds", type=int, default=1_000_000)
    parser.add_argument(
        "--big-repeat", type=int, default=None, help="runs of the big size (default: --repeat)"
    )
    parser.add_argument(
        "--engine-cmd",
        default=DEFAULT_ENGINE_CMD,
        help="our command; {stocks}, {funds} (globs) and {out} (fresh folder) are filled in "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--engine-name", default="digital-finance run", help="label of our command in the table"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    subreaper = _become_subreaper()
    if not subreaper:
        _log("warning: cannot become a child subreaper; CPU of orphaned processes is missed")
    RESULTS.mkdir(parents=True, exist_ok=True)
    ours_label = args.engine_name
    if not ours_label.startswith("digital-finance"):
        ours_label = f"digital-finance ({ours_label})"

    contenders: list[Contender] = []
    data = ensure_data(args.stocks, args.funds, args.seed)
    # An editable install (`pip install -e .`) leaves our modules uncompiled, and where
    # PYTHONDONTWRITEBYTECODE is set (as on this machine) every run compiles them again:
    # 0.2 s per run. A regular install, and PySpark's, is byte-compiled by pip; do the same.
    compileall.compile_dir(str(ROOT / "src"), quiet=1)
    if not args.skip_ours:
        contenders.append(
            bench(
                ours_label, args.engine_cmd, data, args.stocks, args.funds, args.repeat, args.warmup
            )
        )
    if args.spark_engine:
        contenders.append(
            bench(
                "digital-finance --engine spark",
                DEFAULT_ENGINE_CMD + " --engine spark",
                data,
                args.stocks,
                args.funds,
                args.repeat,
                args.warmup,
            )
        )
    if not args.skip_spark:
        spark_cmd = [
            sys.executable,
            str(BENCH / "seed_pyspark_job.py"),
            "--stocks",
            "{stocks}",
            "--funds",
            "{funds}",
            "--out",
            "{out}",
        ]
        contenders.append(
            bench(
                "PySpark seed job",
                spark_cmd,
                data,
                args.stocks,
                args.funds,
                args.repeat,
                args.warmup,
            )
        )
    if args.big and not args.skip_ours:
        big = ensure_data(args.big_stocks, args.big_funds, args.seed)
        contenders.append(
            bench(
                ours_label,
                args.engine_cmd,
                big,
                args.big_stocks,
                args.big_funds,
                args.big_repeat or args.repeat,
            )
        )

    page = render(contenders)
    print(page)
    (RESULTS / "latest.md").write_text(page, encoding="utf-8")
    raw = [
        {"tool": c.tool, "stocks": c.stocks, "funds": c.funds, "runs": [asdict(r) for r in c.runs]}
        for c in contenders
    ]
    (RESULTS / "latest.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    _log(f"written {RESULTS / 'latest.md'}")
    failed = any(not c.ok_runs for c in contenders)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
