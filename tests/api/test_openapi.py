"""The OpenAPI document against the running service: schemathesis finds no 5xx, no answer
outside the document, no valid request refused, no credential ignored."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.service_steps import (
    REPO,
    Running,
    config_text,
    create_key,
    holding,
    start,
    stock,
    wait_ingested,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(folder: Path) -> Iterator[tuple[Running, str]]:
    key = create_key(folder / "api-keys.json", "fuzzer", "admin")
    running = start(folder, config_text(None, rate_per_second=100_000.0, rate_burst=100_000))
    # rows in every table, so the table routes answer 200 as well as 404
    with running.client() as c:
        for dataset, records in (
            ("stocks", [stock(i) for i in range(1, 30)]),
            ("mutual_funds", [holding(i) for i in range(1, 30)]),
        ):
            r = c.post(f"/v1/events/{dataset}", json=records, headers={"X-API-Key": key})
            assert r.status_code == 202, r.text
    assert wait_ingested(running.output, {"stocks": 29, "mutual_funds": 29}) == {
        "stocks": 29,
        "mutual_funds": 29,
    }
    yield running, key
    assert running.stop() == 0, running.errors()


def test_the_document_names_every_route(service: tuple[Running, str]) -> None:
    running, _ = service
    doc: dict[str, Any] = httpx.get(f"{running.url}/openapi.json").json()
    assert set(doc["paths"]) == {
        "/v1/events/{dataset}", "/v1/tables", "/v1/tables/{layer}/{name}", "/healthz",
        "/readyz", "/metrics",
    }  # fmt: skip
    post = doc["paths"]["/v1/events/{dataset}"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert {"202", "400", "401", "403", "413", "429"} <= set(post["responses"])
    schemes = doc["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}


# A page's filter names a column of that table and a value of its type: no schema can say
# which strings those are, so a schema-valid filter may rightly be refused (400) there.
CONFIG = """
checks.enabled = true  # every check, as --checks all (which would override the exception)

[[operations]]
include-path = "/v1/tables/{layer}/{name}"
checks.positive_data_acceptance.enabled = false
"""


def test_schemathesis_finds_nothing_wrong(service: tuple[Running, str], tmp_path: Path) -> None:
    running, key = service
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    done = subprocess.run(
        [
            str(Path(REPO) / ".venv" / "bin" / "schemathesis"), "run",
            f"{running.url}/openapi.json", "-H", f"X-API-Key: {key}",
            "--max-examples", "40", "--seed", "20261206", "--workers", "1",
        ],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Coverage" in done.stdout and "Fuzzing" in done.stdout
    assert "Missing test data" not in done.stdout  # the table routes were reached
