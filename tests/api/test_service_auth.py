"""Who may do what, against the running service: every caller kind, every refusal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.api.service_steps import (
    AUDIENCE,
    Issuer,
    Running,
    cli,
    config_text,
    create_key,
    start,
    stock,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def keys(folder: Any) -> dict[str, str]:
    keys_file = folder / "api-keys.json"
    return {
        "stocks_writer": create_key(keys_file, "ingest-app", "events.write:stocks"),
        "reader": create_key(keys_file, "analyst", "tables.read"),
        "admin": create_key(keys_file, "ops", "admin"),
        "revoked": create_key(keys_file, "old-app", "events.write:*"),
    }


@pytest.fixture(scope="module")
def service(folder: Any, issuer: Issuer, keys: dict[str, str]) -> Iterator[Running]:
    running = start(folder, config_text(issuer, rate_per_second=10_000.0, rate_burst=10_000))
    yield running
    assert running.stop() == 0, running.errors()


def post(service: Running, headers: dict[str, str], dataset: str = "stocks") -> Any:
    with service.client() as c:
        return c.post(f"/v1/events/{dataset}", json=[stock(1)], headers=headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_anonymous_callers_are_refused_with_a_challenge(service: Running) -> None:
    r = post(service, {})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"].startswith("credentials are required")
    with service.client() as c:
        assert c.get("/v1/tables").status_code == 401
        assert c.get("/metrics").status_code == 401
        assert c.get("/healthz").status_code == 200  # probes need no credentials


@pytest.mark.parametrize(
    ("who", "dataset", "status"),
    [
        ("stocks_writer", "stocks", 202),
        ("stocks_writer", "mutual_funds", 403),
        ("reader", "stocks", 403),
        ("admin", "mutual_funds", 202),
    ],
)
def test_api_keys_write_only_the_datasets_their_roles_grant(
    service: Running, keys: dict[str, str], who: str, dataset: str, status: int
) -> None:
    body = (
        [stock(2)]
        if dataset == "stocks"
        else [
            {
                "fund_id": "F1",
                "company_id": 1001,
                "holding_weight": "2",
                "nav": "10",
                "as_of": "2024-03-15T00:00:00Z",
            }
        ]
    )
    with service.client() as c:
        r = c.post(f"/v1/events/{dataset}", json=body, headers={"X-API-Key": keys[who]})
    assert r.status_code == status, r.text
    if status == 403:
        assert f"events.write:{dataset}" in r.json()["detail"]


@pytest.mark.parametrize(
    ("who", "status"), [("reader", 200), ("admin", 200), ("stocks_writer", 403)]
)
def test_reading_tables_needs_tables_read(
    service: Running, keys: dict[str, str], who: str, status: int
) -> None:
    with service.client() as c:
        assert c.get("/v1/tables", headers=bearer(keys[who])).status_code == status


def test_metrics_need_the_admin_role(service: Running, keys: dict[str, str]) -> None:
    with service.client() as c:
        assert c.get("/metrics", headers=bearer(keys["reader"])).status_code == 403
        r = c.get("/metrics", headers=bearer(keys["admin"]))
    assert r.status_code == 200
    assert "digital_finance_api_requests_total" in r.text


def test_a_wrong_or_malformed_key_is_refused(service: Running, keys: dict[str, str]) -> None:
    good = keys["admin"]
    wrong_secret = good[: good.rindex("_") + 1] + "x" * 43
    for key in (wrong_secret, "dfk_nothing", "dfk_000000000000_abc"):
        r = post(service, {"X-API-Key": key})
        assert r.status_code == 401, key
        assert "API key" in r.json()["detail"]
        assert key not in r.text  # a credential is never echoed


def test_a_revoked_key_is_refused_within_seconds_without_a_restart(
    service: Running, keys: dict[str, str]
) -> None:
    key = keys["revoked"]
    assert post(service, bearer(key)).status_code == 202
    key_id = key.split("_")[1]
    done = cli("apikey", "revoke", key_id, "--keys-file", str(service.keys_file))
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 5
    status = 202
    while time.monotonic() < deadline and status != 401:
        status = post(service, bearer(key)).status_code
        time.sleep(0.2)
    assert status == 401
    assert "revoked" in post(service, bearer(key)).json()["detail"]


def test_a_valid_key_beside_a_forged_token_is_refused(
    service: Running, keys: dict[str, str], issuer: Issuer
) -> None:
    forged = issuer.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    headers = {"X-API-Key": keys["admin"], **bearer(forged)}
    assert post(service, headers).status_code == 401
    # two valid credentials of two callers are refused too
    headers = {"X-API-Key": keys["admin"], **bearer(issuer.token(roles=["admin"]))}
    assert post(service, headers).status_code == 401


def test_a_jwt_from_the_issuer_carries_its_roles_and_scopes(
    service: Running, issuer: Issuer
) -> None:
    writer = issuer.token(roles=["events.write:stocks"])
    assert post(service, bearer(writer)).status_code == 202
    assert post(service, bearer(writer), "mutual_funds").status_code == 403
    reader = issuer.token(scp="tables.read openid")
    with service.client() as c:
        assert c.get("/v1/tables", headers=bearer(reader)).status_code == 200
    assert post(service, bearer(reader)).status_code == 403


def _hs256_with_public_key(issuer: Issuer) -> str:
    # the key-confusion attack: HMAC keyed with the issuer's public key, which anyone has
    pem = issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = _admin_claims()
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(pem, head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


def issuer_iss() -> str:
    from tests.api.service_steps import ISSUER

    return ISSUER


def _admin_claims() -> dict[str, Any]:
    """Claims that would be accepted, and grant everything, if only they were signed."""
    now = int(time.time())
    return {
        "iss": issuer_iss(), "aud": AUDIENCE, "tid": "tenant-a", "sub": "x", "nbf": now,
        "exp": now + 60, "roles": ["admin"],
    }  # fmt: skip


def _unsigned(issuer: Issuer) -> str:
    return jwt.encode(_admin_claims(), None, algorithm="none")


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("expired", lambda i: i.token(exp=int(time.time()) - 600, roles=["admin"])),
        ("not yet valid", lambda i: i.token(nbf=int(time.time()) + 600, roles=["admin"])),
        ("wrong audience", lambda i: i.token(aud="api://someone-else", roles=["admin"])),
        ("wrong issuer", lambda i: i.token(iss="https://evil.example/v2.0", roles=["admin"])),
        ("wrong tenant", lambda i: i.token(tid="tenant-b", roles=["admin"])),
        ("no exp", lambda i: i.token(exp=None, roles=["admin"])),
        ("no nbf", lambda i: i.token(nbf=None, roles=["admin"])),
        (
            "unknown signing key",
            lambda i: i.token(
                key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                kid="other",
                roles=["admin"],
            ),
        ),
        (
            "forged with a known kid",
            lambda i: i.token(
                key=rsa.generate_private_key(public_exponent=65537, key_size=2048), roles=["admin"]
            ),
        ),
        ("alg none", _unsigned),
        ("HS256 keyed with the public key", _hs256_with_public_key),
        ("not a JWT", lambda i: "not.a.jwt"),
    ],
)
def test_bad_tokens_are_refused(service: Running, issuer: Issuer, case: str, make: Any) -> None:
    token = make(issuer)
    r = post(service, bearer(token))
    assert r.status_code == 401, (case, r.text)
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.text
    assert token not in body and "Traceback" not in body


def test_the_audit_log_has_one_line_per_write(service: Running, keys: dict[str, str]) -> None:
    marker = "audit-check-7f3a"
    with service.client() as c:
        r = c.post(
            "/v1/events/stocks",
            json=[stock(3)],
            headers={"X-API-Key": keys["admin"], "X-Request-Id": marker},
        )
    assert r.status_code == 202
    time.sleep(0.6)  # the audit thread writes every 0.2 s
    lines = [line for line in service.errors().splitlines() if marker in line]
    assert len(lines) == 1
    import json

    line = json.loads(lines[0])
    assert line["who"].startswith("key:") and line["name"] == "ops"
    assert (line["dataset"], line["status"], line["received"]) == ("stocks", 202, 1)
    assert keys["admin"] not in service.errors()  # no secret in the service's output
