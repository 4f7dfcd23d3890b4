"""Acknowledged means kept: kill -9 right after 202s, restart, and every record is in the
tables once — also while a stream and a batch run write the same lakehouse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from tests.api.service_steps import (
    REPO,
    Running,
    config_text,
    create_key,
    holding,
    ndjson,
    start,
    stock,
    wait_ingested,
)

pytestmark = pytest.mark.slow


def bronze_api(root: Path, dataset: str) -> list[dict[str, Any]]:
    t = DeltaTable(str(root / "bronze" / dataset)).to_pyarrow_table(columns=["record", "source"])
    return [
        json.loads(r)
        for r, s in zip(t["record"].to_pylist(), t["source"].to_pylist(), strict=True)
        if s == "api"
    ]


def assert_each_once(root: Path, sent: dict[str, int]) -> None:
    """Bronze holds every record the service acknowledged, each exactly once."""
    for dataset, n in sent.items():
        seqs = Counter(r["seq"] for r in bronze_api(root, dataset))
        assert len(seqs) == n and set(seqs.values()) == {1}, dataset


def post_batches(
    running: Running, key: str, first: int, requests: int, size: int
) -> dict[str, int]:
    """`requests` requests of `size` records each, stocks and holdings by turns; counts."""
    sent = {"stocks": 0, "mutual_funds": 0}
    with running.client() as c:
        for n in range(requests):
            at = first + n * size
            dataset = "stocks" if n % 2 == 0 else "mutual_funds"
            make = stock if dataset == "stocks" else holding
            records = [make(at + i, seq=at + i) for i in range(size)]
            headers = {"X-API-Key": key, "Content-Type": "application/x-ndjson"}
            if n % 3 == 0:
                headers["Idempotency-Key"] = f"req-{at}"
            r = c.post(f"/v1/events/{dataset}", content=ndjson(records), headers=headers)
            assert r.status_code == 202, r.text
            sent[dataset] += size
    return sent


def test_records_acknowledged_before_a_kill_reach_the_tables_exactly_once(tmp_path: Path) -> None:
    key = create_key(tmp_path / "api-keys.json", "app", "events.write:*")
    slow = config_text(None) + "[stream]\ntrigger_seconds = 3600.0\nmax_batch_records = 1000000\n"
    running = start(tmp_path, slow)  # nothing is ingested before the kill
    sent = post_batches(running, key, 1, 40, 50)
    running.kill()  # SIGKILL right after the last 202
    assert not (tmp_path / "lake" / "bronze" / "stocks").exists()

    running = start(tmp_path, config_text(None) + "[stream]\ntrigger_seconds = 0.2\n")
    try:
        got = wait_ingested(running.output, sent, timeout=90)
        assert got == sent
        # the same idempotent request again, after the restart: answered, not written
        with running.client() as c:
            r = c.post(
                "/v1/events/stocks",
                content=ndjson([stock(i, seq=i) for i in range(1, 51)]),
                headers={
                    "X-API-Key": key,
                    "Content-Type": "application/x-ndjson",
                    "Idempotency-Key": "req-1",
                },
            )
        assert r.status_code == 202 and r.headers.get("idempotent-replayed") == "true"
        time.sleep(1.0)
    finally:
        assert running.stop() == 0, running.errors()
    assert_each_once(running.output, sent)
    silver = DeltaTable(str(running.output / "silver" / "stocks")).to_pyarrow_table(
        columns=["stock_id"]
    )
    assert silver.num_rows == sent["stocks"]


def test_a_keyed_request_with_many_rejected_records_survives_a_restart(tmp_path: Path) -> None:
    """The answer kept with an Idempotency-Key is bounded however many records it lists."""
    key = create_key(tmp_path / "api-keys.json", "app", "events.write:*")
    slow = config_text(None) + "[stream]\ntrigger_seconds = 3600.0\nmax_batch_records = 1000000\n"
    running = start(tmp_path, slow)
    body = b"{}\n" * 10_000  # every record breaks the field rules: all listed as rejected
    headers = {"X-API-Key": key, "Content-Type": "application/x-ndjson", "Idempotency-Key": "big-1"}
    with running.client() as c:
        r = c.post("/v1/events/stocks", content=body, headers=headers)
    assert r.status_code == 202, r.text
    answer = r.json()
    assert (answer["received"], answer["accepted"], len(answer["rejected"])) == (10_000, 0, 1_000)
    running.kill()
    running = start(tmp_path, config_text(None) + "[stream]\ntrigger_seconds = 0.2\n")
    try:
        assert wait_ingested(running.output, {"stocks": 10_000}) == {"stocks": 10_000}
        with running.client() as c:
            again = c.post("/v1/events/stocks", content=body, headers=headers)
            ready = c.get("/readyz")
        assert again.json() == answer and again.headers["idempotent-replayed"] == "true"
        assert ready.status_code == 200, ready.text
    finally:
        assert running.stop() == 0, running.errors()
    quarantined = DeltaTable(str(running.output / "quarantine" / "stocks")).to_pyarrow_table(
        columns=["reason"]
    )
    assert quarantined.num_rows == 10_000


def test_a_kill_during_ingestion_loses_and_doubles_nothing(tmp_path: Path) -> None:
    key = create_key(tmp_path / "api-keys.json", "app", "events.write:*")
    fast = config_text(None) + "[stream]\ntrigger_seconds = 0.05\nmax_batch_records = 300\n"
    total = {"stocks": 0, "mutual_funds": 0}
    for round_ in range(3):
        running = start(tmp_path, fast)
        sent = post_batches(running, key, 100_000 * (round_ + 1), 30, 40)
        for d, n in sent.items():
            total[d] += n
        running.kill()  # while micro-batches of the log are being committed
    running = start(tmp_path, fast)
    try:
        assert wait_ingested(running.output, total, timeout=120) == total
        time.sleep(1.0)
    finally:
        assert running.stop() == 0, running.errors()
    assert_each_once(running.output, total)


def test_the_service_a_stream_and_a_batch_run_share_one_lakehouse(tmp_path: Path) -> None:
    """Requests under load while `run` ingests files and `stream --source folder` a landing
    folder into the same tables: every acknowledged record is there once, and so is every
    file record."""
    key = create_key(tmp_path / "api-keys.json", "app", "events.write:*")
    lake = tmp_path / "lake"
    files = tmp_path / "files"
    landing = tmp_path / "landing"
    for folder, base in ((files, 500_000), (landing, 700_000)):
        (folder / "stocks").mkdir(parents=True)
        (folder / "mutual_funds").mkdir(parents=True)
        (folder / "stocks" / "part-1.json").write_bytes(
            ndjson([stock(base + i, seq=base + i) for i in range(3000)])
        )
        (folder / "mutual_funds" / "part-1.json").write_bytes(
            ndjson([holding(base + i, seq=base + i) for i in range(500)])
        )
    running = start(tmp_path, config_text(None) + "[stream]\ntrigger_seconds = 0.2\n", output=lake)
    sent: dict[str, int] = {}
    failures: list[BaseException] = []

    def load() -> None:
        try:
            sent.update(post_batches(running, key, 1, 120, 25))
        except BaseException as exc:  # reported below
            failures.append(exc)

    client = threading.Thread(target=load)
    client.start()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    batch = subprocess.Popen(
        [sys.executable, "-m", "digital_finance", "run", "--stocks", str(files / "stocks"), "--funds", str(files / "mutual_funds"), "--output", str(lake)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    stream = subprocess.Popen(
        [sys.executable, "-m", "digital_finance", "stream", "--source", "folder", "--path", str(landing), "--output", str(lake), "--once", "--trigger", "0.2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        out_batch, _ = batch.communicate(timeout=240)
        out_stream, _ = stream.communicate(timeout=240)
        assert batch.returncode == 0, out_batch.decode()
        assert stream.returncode == 0, out_stream.decode()
        client.join(240)
        assert not failures, failures
        assert wait_ingested(lake, sent, timeout=120) == sent
        time.sleep(1.0)
    finally:
        for p in (batch, stream):
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        assert running.stop() == 0, running.errors()
    for dataset, n_api in sent.items():
        t = DeltaTable(str(lake / "bronze" / dataset)).to_pyarrow_table(columns=["record"])
        seqs = Counter(json.loads(r)["seq"] for r in t["record"].to_pylist())
        expected = n_api + (3000 if dataset == "stocks" else 500) * 2
        assert sum(seqs.values()) == expected, dataset
        assert set(seqs.values()) == {1}, dataset
    silver = DeltaTable(str(lake / "silver" / "stocks")).to_pyarrow_table(columns=["stock_id"])
    assert silver.num_rows == sent["stocks"] + 6000


def test_a_killed_ingester_is_started_again_and_loses_nothing(tmp_path: Path) -> None:
    """The ingester child dies (SIGKILL, mid-batch or between): the service keeps taking
    requests, starts a new child, and the tables end with every record once."""
    import psutil

    key = create_key(tmp_path / "api-keys.json", "app", "events.write:*")
    running = start(
        tmp_path, config_text(None) + "[stream]\ntrigger_seconds = 0.05\nmax_batch_records = 200\n"
    )
    try:
        total = {"stocks": 0, "mutual_funds": 0}
        for round_ in range(3):
            sent = post_batches(running, key, 200_000 * (round_ + 1), 20, 40)
            for d, n in sent.items():
                total[d] += n
            children: list[Any] = []
            deadline = time.monotonic() + 30  # after a kill, a new child comes after a pause
            while not children and time.monotonic() < deadline:
                children = [
                    c for c in psutil.Process(running.process.pid).children(recursive=True)
                    if "ingest_process" in " ".join(c.cmdline())
                ]  # fmt: skip
                time.sleep(0.1)
            assert len(children) == 1, (round_, running.errors()[-3000:])
            children[0].kill()
            children[0].wait(30)
        assert wait_ingested(running.output, total, timeout=120) == total
        with running.client() as c:
            deadline = time.monotonic() + 30
            while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert c.get("/readyz").status_code == 200
        time.sleep(1.0)
    finally:
        assert running.stop() == 0, running.errors()
    assert_each_once(running.output, total)
