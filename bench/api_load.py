"""Load on the ingestion API (`digital-finance serve`) with wrk, beside a naive peer.

Three scenarios, each run as pairs — ours, then the peer (`bench/peers/naive_api.py`) — on
the same machine in the same run, with authentication on for both:

- `single`: one record per request, 32 connections: requests/s and latency;
- `batch`: 1,000 records per request, 8 connections: events/s durable;
- `paced`: one record per request at about 1,000 requests/s (wrk's per-connection delay):
  latency p50 / p99 at a rate both can sustain.

Ours answers 202 once the records are fsynced to its log (group commit) and ingests the log
into the lakehouse on a thread meanwhile; the peer fsyncs each request and ingests nothing.
After the load the bench waits for our tables to hold every accepted record and prints how
long that took. Every figure is the median of the pairs, with the range; ratios are ours
over the peer's (requests/s: above 1 is ours faster; latency: below 1 is ours faster).

    .venv/bin/python bench/api_load.py                    # 3 pairs of 8 s per scenario
    .venv/bin/python bench/api_load.py --pairs 5 --seconds 10 --scenarios single,batch

Needs `wrk` on PATH (`apt-get install wrk`; `make bench-tools`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BATCH = 1_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def record(i: int) -> dict[str, Any]:
    return {
        "stock_id": i, "company_id": 1000 + i % 50, "symbol": f"S{i % 997}",
        "price": f"{10 + i % 90}.{i % 1000:03d}", "volume": i, "exchange": "NYSE",
        "timestamp": "2024-03-15T14:30:00Z",
    }  # fmt: skip


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    headers: dict[str, str]
    ndjson: bool

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def wait_up(url: str, process: subprocess.Popen[bytes], path: str) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + path, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise SystemExit(f"{url} did not start")


def start_ours(work: Path) -> Server:
    from digital_finance.service.auth.api_keys import ApiKeyStore

    _, key = ApiKeyStore(work / "keys.json").create("bench", ["events.write:stocks", "admin"])
    (work / "ours.toml").write_text(
        "[api]\nrate_per_second = 1000000.0\nrate_burst = 1000000\nmax_records = 10000\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            PYTHON, "-m", "digital_finance", "serve", "--output", str(work / "lake"),
            "--log-dir", str(work / "log"), "--keys-file", str(work / "keys.json"),
            "--port", str(port), "--config", str(work / "ours.toml"),
        ],
        stdout=subprocess.DEVNULL, stderr=(work / "ours.err").open("wb"), cwd=REPO,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_up(url, process, "/healthz")
    return Server("ours", url, process, {"Authorization": f"Bearer {key}"}, ndjson=True)


def start_peer(work: Path) -> Server:
    key = "peer-" + os.urandom(16).hex()
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, str(REPO / "bench" / "peers" / "naive_api.py"), "--port", str(port),
         "--key", key, "--log", str(work / "peer.log")],
        stdout=subprocess.DEVNULL, stderr=(work / "peer.err").open("wb"), cwd=REPO,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_up(url, process, "/openapi.json")
    return Server("peer", url, process, {"X-API-Key": key}, ndjson=False)


def script(server: Server, scenario: str, work: Path, first: int) -> Path:
    """A wrk Lua script: headers, and a body per request (one record) or one fixed batch."""
    kind = "application/x-ndjson" if server.ndjson else "application/json"
    lines = ['wrk.method = "POST"', f'wrk.headers["Content-Type"] = "{kind}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in server.headers.items()]
    if scenario == "batch":
        records = [record(first + i) for i in range(BATCH)]
        body = (
            "".join(json.dumps(r) + "\n" for r in records) if server.ndjson else json.dumps(records)
        )
        path = work / f"{server.name}-batch.body"
        path.write_text(body)
        lines += [f'local f = io.open("{path}", "r")', "wrk.body = f:read('*all')", "f:close()"]
    else:
        template = json.dumps(record(0)).replace('"stock_id": 0', '"stock_id": " .. n .. "')
        lines += [
            f"n = {first}",
            "request = function()",
            "  n = n + 1",
            f"  return wrk.format(nil, nil, nil, '{template}')".replace(
                '" .. n .. "', "' .. n .. '"
            ),
            "end",
        ]
        if scenario == "paced":
            lines.append("delay = function() return 15 end")  # ms between a connection's calls
    out = work / f"{server.name}-{scenario}.lua"
    out.write_text("\n".join(lines) + "\n")
    return out


CONNECTIONS = {"single": 32, "batch": 8, "paced": 21}


def run_wrk(
    server: Server, scenario: str, seconds: int, work: Path, first: int
) -> dict[str, float]:
    lua = script(server, scenario, work, first)
    done = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS[scenario]}", f"-d{seconds}s", "--latency",
         "-s", str(lua), f"{server.url}/v1/events/stocks"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "events": rps * (BATCH if scenario == "batch" else 1),
        "p50_ms": _ms(out, "50%"),
        "p99_ms": _ms(out, "99%"),
        "requests": total,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": 1 if errors else 0,
    }


def _ms(out: str, label: str) -> float:
    m = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)", out)
    assert m is not None, out
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.1f} ({min(values):,.1f}-{max(values):,.1f})"


def ingested(server: Server) -> int:
    """Records the service's ingester has put in the tables since it started."""
    import urllib.request

    with urllib.request.urlopen(server.url + "/readyz", timeout=10) as r:
        return int(json.loads(r.read())["records"])


def accepted_by(server: Server) -> int:
    """Records the service answered 202 for (its `/metrics`)."""
    import urllib.request

    request = urllib.request.Request(server.url + "/metrics", headers=server.headers)
    with urllib.request.urlopen(request, timeout=10) as r:
        text = r.read().decode()
    found = re.findall(r"digital_finance_api_records_total\{[^}]*\} ([\d.e+]+)", text)
    return int(sum(float(v) for v in found))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--scenarios", default="single,batch,paced")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "api_load.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH: apt-get install wrk (or make bench-tools)")
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(REPO / "src")], check=True)
    work = Path(tempfile.mkdtemp(prefix="api-load-"))
    ours, peer = start_ours(work), start_peer(work)
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    first = 1
    try:
        for server in (ours, peer):  # untimed: imports, first table commits, warm caches
            run_wrk(server, "single", 2, work, first)
            first += 100_000
        warmed = accepted_by(ours)
        for scenario in args.scenarios.split(","):
            results[scenario] = {"ours": [], "peer": []}
            for pair in range(args.pairs):
                for server in (ours, peer):
                    got = run_wrk(server, scenario, args.seconds, work, first)
                    first += int(got["requests"]) * (BATCH if scenario == "batch" else 1) + 1
                    results[scenario][server.name].append(got)
                    print(
                        f"{scenario} pair {pair + 1} {server.name}: {got['rps']:,.0f} req/s, "
                        f"{got['events']:,.0f} events/s, p50 {got['p50_ms']:.2f} ms, "
                        f"p99 {got['p99_ms']:.2f} ms, non-2xx {got['non_2xx']:.0f}",
                        flush=True,
                    )
        accepted = accepted_by(ours)  # what the service counted: wrk misses those in flight
        started = time.monotonic()
        while ingested(ours) < accepted and time.monotonic() - started < 900:
            time.sleep(0.5)
        drain = time.monotonic() - started
        in_tables = ingested(ours)
    finally:
        ours.stop()
        peer.stop()
    summary: dict[str, Any] = {"pairs": args.pairs, "seconds": args.seconds, "scenarios": {}}
    print()
    for scenario, sides in results.items():
        o, p = sides["ours"], sides["peer"]
        row = {
            side: {k: [r[k] for r in runs] for k in ("rps", "events", "p50_ms", "p99_ms")}
            for side, runs in sides.items()
        }
        ratio_rps = [a["rps"] / b["rps"] for a, b in zip(o, p, strict=True)]
        ratio_p99 = [a["p99_ms"] / b["p99_ms"] for a, b in zip(o, p, strict=True)]
        summary["scenarios"][scenario] = {**row, "rps_ratio": ratio_rps, "p99_ratio": ratio_p99}
        print(f"{scenario}:")
        for side in ("ours", "peer"):
            r = row[side]
            print(
                f"  {side}: req/s {spread(r['rps'])}; events/s {spread(r['events'])}; "
                f"p50 ms {spread(r['p50_ms'])}; p99 ms {spread(r['p99_ms'])}"
            )
        print(
            f"  ours/peer: req/s {statistics.median(ratio_rps):.2f}x "
            f"({min(ratio_rps):.2f}-{max(ratio_rps):.2f}); p99 "
            f"{statistics.median(ratio_p99):.2f}x ({min(ratio_p99):.2f}-{max(ratio_p99):.2f})"
        )
    summary["accepted"] = accepted
    summary["warm_up_accepted"] = warmed
    summary["in_tables"] = in_tables
    summary["drain_seconds"] = drain
    print(
        f"\nours: {accepted:,} records accepted; the tables held {in_tables:,} of them "
        f"{drain:.1f} s after the load ended"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if in_tables >= accepted else 1


if __name__ == "__main__":
    raise SystemExit(main())
