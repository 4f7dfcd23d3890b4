"""A real `digital-finance serve` for the API tests: its keys, its issuer, its process.

The service runs as its own process on a free 127.0.0.1 port, as a user starts it; the
issuer is a local key pair whose JWKS a local HTTP server publishes, so tokens are signed
and checked exactly as Entra ID's would be.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parents[2]
ISSUER = "https://login.example.test/tenant-a/v2.0"
AUDIENCE = "api://digital-finance"
TENANT = "tenant-a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Issuer:
    """A key pair and a JWKS endpoint on 127.0.0.1: the tests' OpenID Connect issuer."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}
        body = json.dumps(self.jwks).encode()

        class Keys(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/keys"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(
        self, *, key: Any = None, alg: str = "RS256", kid: str | None = None, **claims: Any
    ) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER, "aud": AUDIENCE, "tid": TENANT, "sub": "user-1", "oid": "oid-1",
            "preferred_username": "ada@example.test", "iat": now, "nbf": now - 5,
            "exp": now + 600,
        }  # fmt: skip
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.key, algorithm=alg, headers={"kid": kid or self.kid})

    def close(self) -> None:
        self.server.shutdown()


def config_text(issuer: Issuer | None, **api: Any) -> str:
    lines = ["[api]"]
    for k, v in api.items():
        lines.append(f"{k} = {json.dumps(v)}")
    if issuer is not None:
        lines += [
            "[api.jwt]",
            f'issuer = "{ISSUER}"',
            f'audiences = ["{AUDIENCE}"]',
            f'jwks_url = "{issuer.url}"',
            f'tenants = ["{TENANT}"]',
        ]
    return "\n".join(lines) + "\n"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "digital_finance", *args],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip


def create_key(keys_file: Path, owner: str, *roles: str) -> str:
    args = ["apikey", "create", "--keys-file", str(keys_file), "--owner", owner]
    for role in roles:
        args += ["--role", role]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@dataclass
class Running:
    """A service process and where it keeps things."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes]
    stderr: Path
    keys_file: Path
    output: Path
    log_dir: Path
    config: Path
    extra: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode)


def start(
    folder: Path,
    config: str,
    *,
    port: int | None = None,
    output: Path | None = None,
    log_dir: Path | None = None,
    keys_file: Path | None = None,
    wait: float = 60,
) -> Running:
    """Start `digital-finance serve` and wait until `/healthz` answers."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cfg = folder / "service.toml"
    cfg.write_text(config)
    output = output or folder / "lake"
    log_dir = log_dir or folder / "api-log"
    keys_file = keys_file or folder / "api-keys.json"
    stderr = folder / f"serve-{port}-{time.monotonic_ns()}.err"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "digital_finance", "serve", "--output", str(output),
            "--config", str(cfg), "--port", str(port), "--log-dir", str(log_dir),
            "--keys-file", str(keys_file),
        ],
        stdout=subprocess.DEVNULL, stderr=stderr.open("wb"), cwd=REPO, start_new_session=True,
    )  # fmt: skip
    running = Running(folder, port, process, stderr, keys_file, output, log_dir, cfg)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}: {running.errors()}")
        try:
            if httpx.get(f"{running.url}/healthz", timeout=2).status_code == 200:
                return running
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    running.kill()
    raise AssertionError(f"serve did not start within {wait} s: {running.errors()}")


def stock(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "stock_id": i, "company_id": 1000 + i % 50, "symbol": f"S{i % 997}",
        "price": f"{10 + i % 90}.{i % 1000:03d}", "volume": i, "exchange": "NYSE",
        "timestamp": f"2024-03-15T14:{i % 60:02d}:00Z", **extra,
    }  # fmt: skip


def holding(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "fund_id": f"F{i % 200}", "fund_name": "Fund", "company_id": 1000 + i % 50,
        "holding_weight": "1.5", "nav": "101.25", "as_of": "2024-03-15T00:00:00Z", **extra,
    }  # fmt: skip


def ndjson(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def wait_ingested(lake_root: Path, expected: dict[str, int], timeout: float = 90) -> dict[str, int]:
    """Bronze rows of source `api` per dataset, once they reach `expected` (or the timeout)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    deadline = time.monotonic() + timeout
    got: dict[str, int] = {}
    while time.monotonic() < deadline:
        got = {}
        for dataset in expected:
            try:
                t = DeltaTable(str(lake_root / "bronze" / dataset)).to_pyarrow_table(
                    columns=["source"]
                )
                got[dataset] = sum(1 for s in t["source"].to_pylist() if s == "api")
            except TableNotFoundError:
                got[dataset] = 0
        if all(got[d] >= n for d, n in expected.items()):
            return got
        time.sleep(0.2)
    return got
