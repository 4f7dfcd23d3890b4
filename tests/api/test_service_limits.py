"""What the service refuses before it keeps anything, against the running service."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.service_steps import (
    Running,
    config_text,
    create_key,
    ndjson,
    start,
    stock,
)

pytestmark = pytest.mark.slow

LIMITS = {
    "max_body_bytes": 200_000,
    "max_records": 500,
    "max_depth": 8,
    "max_string_bytes": 2_000,
    "request_timeout_seconds": 2.0,
    "rate_per_second": 10_000.0,
    "rate_burst": 10_000,
}


@pytest.fixture(scope="module")
def key(folder: Any) -> str:
    return create_key(folder / "api-keys.json", "app", "events.write:*", "tables.read")


@pytest.fixture(scope="module")
def service(folder: Any, key: str) -> Iterator[Running]:
    running = start(folder, config_text(None, **LIMITS))
    yield running
    assert running.stop() == 0, running.errors()


def send(
    service: Running,
    key: str,
    content: bytes,
    content_type: str = "application/json",
    **headers: str,
) -> httpx.Response:
    with service.client() as c:
        return c.post(
            "/v1/events/stocks",
            content=content,
            headers={"X-API-Key": key, "Content-Type": content_type, **headers},
        )


def refused(r: httpx.Response, status: int, text: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert text in body["detail"], body
    assert "Traceback" not in r.text
    return body


def test_one_object_an_array_and_ndjson_are_taken(service: Running, key: str) -> None:
    one = send(service, key, json.dumps(stock(10)).encode())
    many = send(service, key, json.dumps([stock(11), stock(12)]).encode())
    lines = send(service, key, ndjson([stock(13), stock(14), stock(15)]), "application/x-ndjson")
    zipped = send(
        service,
        key,
        gzip.compress(ndjson([stock(16)])),
        "application/x-ndjson",
        **{"Content-Encoding": "gzip"},
    )
    assert [r.status_code for r in (one, many, lines, zipped)] == [202] * 4
    assert [r.json()["accepted"] for r in (one, many, lines, zipped)] == [1, 2, 3, 1]


def test_records_breaking_a_field_rule_are_listed_and_kept_for_quarantine(
    service: Running, key: str
) -> None:
    bad_price = stock(20, price="-1")
    no_symbol = {k: v for k, v in stock(21).items() if k != "symbol"}
    r = send(service, key, ndjson([stock(22), bad_price, no_symbol]), "application/x-ndjson")
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["received"], body["accepted"]) == (3, 1)
    assert body["rejected"] == [
        {"index": 1, "line": 2, "reasons": ["invalid_price"]},
        {"index": 2, "line": 3, "reasons": ["missing_symbol"]},
    ]


@pytest.mark.parametrize(
    ("case", "content", "reason"),
    [
        (
            "NaN",
            b'{"stock_id": 1, "company_id": 1, "symbol": "A", "price": NaN, "timestamp": 1}',
            "invalid_json",
        ),
        ("Infinity", b'[{"stock_id": 1, "price": Infinity}]', "invalid_json"),
        (
            "duplicate key",
            b'{"stock_id": 1, "stock_id": 2, "company_id": 1, "symbol": "A", "price": 1, "timestamp": 1}',
            "duplicate_key",
        ),
        ("invalid UTF-8", b'{"stock_id": 1, "symbol": "\xff\xfe", "price": 1}', "invalid_utf8"),
        (
            "too deep",
            json.dumps(stock(1, extra=[[[[[[[[[[1]]]]]]]]]])).encode(),
            "nesting_too_deep",
        ),
        ("a string too long", json.dumps(stock(1, note="x" * 5_000)).encode(), "string_too_long"),
        ("a server-owned field", json.dumps(stock(1, _batch_id=7)).encode(), "server_owned_field"),
        ("not an object", b"[1, 2]", "not_an_object"),
    ],
)
def test_malformed_records_refuse_the_whole_request(
    service: Running, key: str, case: str, content: bytes, reason: str
) -> None:
    body = refused(send(service, key, content), 400, "nothing of this request was kept")
    assert body["errors"][0]["reasons"] == [reason], case


def test_the_depth_limit_holds_for_records_that_also_break_field_rules(
    service: Running, key: str
) -> None:
    deep = {"extra": [[[[[[[[[[1]]]]]]]]]]}  # 11 deep, over max_depth 8; no contract field
    records = [deep] * 20  # enough for the native kernel's path
    body = refused(send(service, key, json.dumps(records).encode()), 400, "nothing of this request")
    assert {tuple(e["reasons"]) for e in body["errors"]} == {("nesting_too_deep",)}
    escaped = b'{"\\u005fbatch_id": 1, "stock_id": 5}'
    body = refused(send(service, key, escaped), 400, "server_owned_field")


def test_concurrent_retries_with_one_key_write_once(service: Running, key: str) -> None:
    import concurrent.futures

    body = ndjson([stock(950), stock(951), stock(952)])

    def attempt(_: int) -> httpx.Response:
        return send(service, key, body, "application/x-ndjson", **{"Idempotency-Key": "burst-1"})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(16)))
    assert {r.status_code for r in answers} == {202}
    assert len({r.json()["request_id"] for r in answers}) == 1  # one write, fifteen replays
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in answers) == 15


def test_readyz_says_how_far_the_tables_are(service: Running) -> None:
    with service.client() as c:
        r = c.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    assert set(body["log"]) == {"stocks", "mutual_funds"}
    assert body["log"]["stocks"]["durable"] >= 1


def test_the_ingester_runs_below_the_front_doors_priority(service: Running) -> None:
    front = _nice(service.process.pid)
    expected = min(front + 10, 19)  # `[api] ingest_nice`'s default: 10 steps below
    task = Path("/proc") / str(service.process.pid) / "task"
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 30  # the ingester process lowers itself as it starts
    while time.monotonic() < deadline:
        children = [int(c) for t in task.iterdir() for c in (t / "children").read_text().split()]
        seen = [(c, _nice(c)) for c in children]
        if len(seen) == 1 and seen[0][1] == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"the service's child processes and their nice values: {seen}")


def _nice(pid: int) -> int:
    # /proc/PID/stat: the command is in parentheses and may hold spaces; nice is field 19
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])


def test_a_body_that_is_not_json_at_all_is_a_clear_400(service: Running, key: str) -> None:
    refused(send(service, key, b"hello"), 400, "JSON object")
    refused(send(service, key, b'[{"a": 1}'), 400, "not valid JSON")
    refused(send(service, key, b"   "), 400, "JSON object")


def test_media_types_and_encodings_other_than_json_are_415(service: Running, key: str) -> None:
    refused(send(service, key, b"<x/>", "application/xml"), 415, "Content-Type")
    refused(
        send(service, key, b"{}", "application/json", **{"Content-Encoding": "br"}),
        415,
        "Content-Encoding",
    )


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(
    service: Running, key: str
) -> None:
    refused(send(service, key, b" " * 250_000), 413, "over the limit")


def test_a_streamed_body_is_cut_off_at_the_limit(service: Running, key: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):  # 1 MB, chunked, no Content-Length
            yield b" " * 10_000

    with service.client() as c:
        r = c.post(
            "/v1/events/stocks",
            content=chunks(),
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        )
    refused(r, 413, "over the limit")


def test_a_gzip_bomb_is_stopped_at_the_limit(service: Running, key: str) -> None:
    bomb = gzip.compress(b" " * 50_000_000)  # 50 MB of blanks in ~50 kB
    assert len(bomb) < LIMITS["max_body_bytes"]
    refused(send(service, key, bomb, **{"Content-Encoding": "gzip"}), 413, "inflated")
    assert send(service, key, json.dumps(stock(30)).encode()).status_code == 202  # still serving


def test_too_many_records_is_413(service: Running, key: str) -> None:
    records = [{"stock_id": i} for i in range(501)]
    refused(send(service, key, json.dumps(records).encode()), 413, "501 records")


def test_a_body_that_never_finishes_times_out(service: Running, key: str) -> None:
    with socket.create_connection(("127.0.0.1", service.port)) as s:
        s.sendall(
            b"POST /v1/events/stocks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"X-API-Key: {key}\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"stock_id": 1'
        )
        s.settimeout(10)
        started = time.monotonic()
        answer = s.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 408"), answer
    assert 1.5 < time.monotonic() - started < 8


def test_unknown_datasets_are_404(service: Running, key: str) -> None:
    with service.client() as c:
        r = c.post("/v1/events/bonds", json={"a": 1}, headers={"X-API-Key": key})
    refused(r, 404, "no dataset 'bonds'")


def test_a_retry_with_the_same_idempotency_key_writes_nothing_again(
    service: Running, key: str
) -> None:
    body = ndjson([stock(900), stock(901)])
    first = send(service, key, body, "application/x-ndjson", **{"Idempotency-Key": "order-77"})
    again = send(service, key, body, "application/x-ndjson", **{"Idempotency-Key": "order-77"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    other = send(
        service,
        key,
        ndjson([stock(902)]),
        "application/x-ndjson",
        **{"Idempotency-Key": "order-77"},
    )
    refused(other, 409, "different request")
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    deadline = time.monotonic() + 30
    ids: list[Any] = []
    while time.monotonic() < deadline and len(ids) < 2:
        try:
            t = DeltaTable(str(service.output / "bronze" / "stocks")).to_pyarrow_table(
                columns=["record"]
            )
        except TableNotFoundError:
            time.sleep(0.2)
            continue
        ids = [json.loads(r)["stock_id"] for r in t["record"].to_pylist() if '"stock_id": 90' in r]
        time.sleep(0.2)
    time.sleep(1.5)  # a doubled write would land in the next micro-batch
    t = DeltaTable(str(service.output / "bronze" / "stocks")).to_pyarrow_table(columns=["record"])
    ids = sorted(
        json.loads(r)["stock_id"] for r in t["record"].to_pylist() if '"stock_id": 90' in r
    )
    assert ids == [900, 901]


def test_a_client_over_its_rate_is_told_when_to_come_back(tmp_path: Any) -> None:
    key = create_key(tmp_path / "api-keys.json", "eager", "events.write:stocks")
    other = create_key(tmp_path / "api-keys.json", "calm", "events.write:stocks")
    running = start(tmp_path, config_text(None, rate_per_second=0.5, rate_burst=3))
    try:
        statuses = [send(running, key, json.dumps(stock(i)).encode()).status_code for i in range(5)]
        assert statuses == [202, 202, 202, 429, 429]
        r = send(running, key, json.dumps(stock(9)).encode())
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert send(running, other, json.dumps(stock(9)).encode()).status_code == 202  # per client
    finally:
        assert running.stop() == 0, running.errors()
