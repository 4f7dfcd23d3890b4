"""Bearer JWTs: every rule of `JwtVerifier`, against a JWKS served on 127.0.0.1.

Keys are made here (RSA and EC), tokens minted with PyJWT, and the verifier fetches the
JWKS over HTTP with its default fetch, so key rotation and refetch throttling are checked
by counting the requests the server saw.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from digital_finance.service.auth import AuthError, JwksError, JwtVerifier, Principal
from digital_finance.settings import JwtSettings

ISSUER = "https://login.microsoftonline.com/tenant-1/v2.0"
AUDIENCE = "api://digital-finance"
TENANT = "tenant-1"
OID = "00000000-0000-0000-0000-0000000000aa"


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


class JwksServer:
    """Serves `document` at /keys and counts the requests; `status` other than 200 fails."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.status = 200
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = json.dumps(outer.document).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/keys"
        # a short poll: `shutdown` waits for it, once per test
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Key:
    """A key pair, its public JWK (as Entra publishes it: no `alg`) and a token minter."""

    def __init__(self, private: Any, kid: str) -> None:
        self.private = private
        self.kid = kid
        if isinstance(private, rsa.RSAPrivateKey):
            self.jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
            self.alg = "RS256"
        else:
            self.jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
            self.alg = "ES256"
        self.jwk.update(kid=kid, use="sig")

    def token(self, claims: dict[str, Any], alg: str | None = None, **headers: Any) -> str:
        return jwt.encode(
            claims, self.private, algorithm=alg or self.alg, headers={"kid": self.kid, **headers}
        )

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    return Key(rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-1")


@pytest.fixture(scope="module")
def rotated_key() -> Key:
    return Key(rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-2")


@pytest.fixture(scope="module")
def ec_key() -> Key:
    return Key(ec.generate_private_key(ec.SECP256R1()), "ec-1")


@pytest.fixture(scope="module")
def attacker_key() -> Key:
    return Key(rsa.generate_private_key(public_exponent=65537, key_size=2048), "attacker")


@pytest.fixture
def server(rsa_key: Key, ec_key: Key) -> Iterator[JwksServer]:
    served = JwksServer()
    served.document = {"keys": [rsa_key.jwk, ec_key.jwk]}
    yield served
    served.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def settings(server: JwksServer, **changes: Any) -> JwtSettings:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "jwks_url": server.url,
        "algorithms": ["RS256", "ES256"],
        "leeway_seconds": 60,
        "jwks_cooldown_seconds": 30,
        "jwks_max_age_seconds": 3600,
    }
    values.update(changes)
    return JwtSettings(**values)


def verifier(server: JwksServer, clock: Clock, **changes: Any) -> JwtVerifier:
    return JwtVerifier(settings(server, **changes), clock=clock)


def claims(clock: Clock, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(clock.now) - 10,
        "nbf": int(clock.now) - 10,
        "exp": int(clock.now) + 600,
        "tid": TENANT,
        "oid": OID,
        "sub": "pairwise-subject",
        "preferred_username": "ada@example.com",
        "roles": ["events.write:stocks", 42],
        "scp": "tables.read User.Read",
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def refused(check: JwtVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        check.verify(token)
    assert info.value.status == 401
    assert 'error="invalid_token"' in info.value.www_authenticate
    if token:  # never echoed back
        assert token not in info.value.detail and token not in info.value.www_authenticate
    return info.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], payload: dict[str, Any], key: bytes | None = None) -> str:
    """A token built by hand: unsigned, or HMAC-SHA256 signed with `key`."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = (
        b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{b64(signature)}"


def test_a_valid_token_names_the_caller_with_roles_from_roles_and_scp(
    server: JwksServer, clock: Clock, rsa_key: Key
) -> None:
    principal = verifier(server, clock).verify(rsa_key.token(claims(clock)))
    assert principal == Principal(
        subject=f"jwt:{TENANT}/{OID}",
        name="ada@example.com",
        kind="jwt",
        roles=frozenset({"events.write:stocks", "tables.read", "User.Read"}),
    )  # 42 in `roles` is not a string: ignored
    assert principal.may_write("stocks") and not principal.may_write("mutual_funds")
    assert principal.may_read() and not principal.is_admin


def test_an_app_token_is_named_by_its_app_id_and_an_ec_key_works_too(
    server: JwksServer, clock: Clock, ec_key: Key
) -> None:
    token = ec_key.token(
        claims(clock, preferred_username=None, scp=None, appid="app-7", roles=["admin"])
    )
    principal = verifier(server, clock).verify(token)
    assert (principal.name, principal.subject) == ("app-7", f"jwt:{TENANT}/{OID}")
    assert principal.is_admin and principal.may_write("mutual_funds") and principal.may_read()


def test_an_expired_token_is_refused(server: JwksServer, clock: Clock, rsa_key: Key) -> None:
    token = rsa_key.token(claims(clock, exp=int(clock.now) - 61))
    error = refused(verifier(server, clock), token)
    assert error.detail == "the token has expired"
    assert 'error_description="the token has expired"' in error.www_authenticate


def test_a_token_expired_within_the_leeway_is_accepted(
    server: JwksServer, clock: Clock, rsa_key: Key
) -> None:
    token = rsa_key.token(claims(clock, exp=int(clock.now) - 30))
    assert verifier(server, clock).verify(token).subject == f"jwt:{TENANT}/{OID}"


def test_a_token_not_valid_yet_is_refused(server: JwksServer, clock: Clock, rsa_key: Key) -> None:
    token = rsa_key.token(claims(clock, nbf=int(clock.now) + 300))
    assert refused(verifier(server, clock), token).detail == "the token is not valid yet"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iss", "aud"])
def test_a_token_without_a_required_claim_is_refused(
    server: JwksServer, clock: Clock, rsa_key: Key, claim: str
) -> None:
    token = rsa_key.token(claims(clock, **{claim: None}))
    error = refused(verifier(server, clock), token)
    assert error.detail == f"the token lacks the required claim {claim}"


def test_a_token_of_another_issuer_is_refused(
    server: JwksServer, clock: Clock, rsa_key: Key
) -> None:
    token = rsa_key.token(claims(clock, iss="https://login.microsoftonline.com/other/v2.0"))
    assert refused(verifier(server, clock), token).detail == "the token's issuer is not accepted"


def test_a_token_for_another_audience_is_refused(
    server: JwksServer, clock: Clock, rsa_key: Key
) -> None:
    token = rsa_key.token(claims(clock, aud="api://someone-else"))
    assert refused(verifier(server, clock), token).detail == "the token's audience is not accepted"


def test_only_the_listed_tenants_are_accepted(
    server: JwksServer, clock: Clock, rsa_key: Key
) -> None:
    check = verifier(server, clock, tenants=[TENANT])
    other = rsa_key.token(claims(clock, tid="tenant-2"))
    assert refused(check, other).detail == "the token's tenant is not accepted"
    assert refused(check, rsa_key.token(claims(clock, tid=None))).detail == (
        "the token's tenant is not accepted"
    )
    assert check.verify(rsa_key.token(claims(clock))).subject == f"jwt:{TENANT}/{OID}"


def test_an_unsigned_token_is_refused_before_any_key_is_fetched(
    server: JwksServer, clock: Clock, rsa_key: Key
) -> None:
    token = handmade({"alg": "none", "typ": "JWT", "kid": rsa_key.kid}, claims(clock))
    error = refused(verifier(server, clock), token)
    assert error.detail == "the token's signing algorithm is not accepted"
    assert server.requests == 0


def test_hs256_signed_with_the_public_key_is_refused_even_if_configured(
    server: JwksServer, clock: Clock, rsa_key: Key
) -> None:
    """The key-confusion attack: an HMAC keyed with the issuer's public key, which anyone
    can download, must never pass as the issuer's signature."""
    token = handmade(
        {"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid},
        claims(clock, roles=["admin"]),
        rsa_key.public_pem(),
    )
    assert refused(verifier(server, clock), token).detail == (
        "the token's signing algorithm is not accepted"
    )
    # a configuration that lists HS256 (only possible by going around validation) changes
    # nothing: none and HS* are refused by name
    unchecked = JwtSettings.model_construct(
        **{**settings(server).model_dump(), "algorithms": ["HS256", "none", "RS256"]}
    )
    check = JwtVerifier(unchecked, clock=clock)
    assert refused(check, token).detail == "the token's signing algorithm is not accepted"
    assert server.requests == 0


def test_an_algorithm_outside_the_allowlist_is_refused(
    server: JwksServer, clock: Clock, rsa_key: Key
) -> None:
    token = rsa_key.token(claims(clock), alg="RS512")
    check = verifier(server, clock, algorithms=["RS256"])
    assert refused(check, token).detail == "the token's signing algorithm is not accepted"


def test_an_algorithm_that_does_not_fit_the_key_is_refused(
    server: JwksServer, clock: Clock, rsa_key: Key, ec_key: Key
) -> None:
    # signed with the EC key as ES256, but naming the RSA key
    token = jwt.encode(claims(clock), ec_key.private, algorithm="ES256", headers={"kid": "rsa-1"})
    error = refused(verifier(server, clock), token)
    assert error.detail == "the token's signing algorithm does not fit its key"


def test_a_tampered_payload_breaks_the_signature(
    server: JwksServer, clock: Clock, rsa_key: Key
) -> None:
    header, _, signature = rsa_key.token(claims(clock)).split(".")
    forged = b64(json.dumps(claims(clock, roles=["admin"])).encode())
    error = refused(verifier(server, clock), f"{header}.{forged}.{signature}")
    assert error.detail == "the token's signature is invalid"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "x" * 40_000])
def test_a_malformed_token_is_refused(server: JwksServer, clock: Clock, token: str) -> None:
    assert refused(verifier(server, clock), token).detail == "the token is malformed"


def test_an_unknown_kid_refetches_once_and_picks_up_a_rotated_key(
    server: JwksServer, clock: Clock, rsa_key: Key, rotated_key: Key
) -> None:
    check = verifier(server, clock)
    check.verify(rsa_key.token(claims(clock)))
    assert server.requests == 1
    server.document = {"keys": [rsa_key.jwk, rotated_key.jwk]}  # the issuer rotated
    clock.now += 31  # past the cooldown since the first fetch
    principal = check.verify(rotated_key.token(claims(clock)))
    assert principal.subject == f"jwt:{TENANT}/{OID}"
    assert server.requests == 2


def test_unknown_kids_within_the_cooldown_do_not_refetch(
    server: JwksServer, clock: Clock, rsa_key: Key, attacker_key: Key
) -> None:
    check = verifier(server, clock)
    check.prefetch()
    clock.now += 31
    for kid in ("made-up-1", "made-up-2", "made-up-3"):
        token = attacker_key.token(claims(clock), kid=kid)
        assert refused(check, token).detail == "the token's signing key is unknown"
    assert server.requests == 2  # the prefetch, then one refetch for made-up-1
    clock.now += 31
    refused(check, attacker_key.token(claims(clock), kid="made-up-4"))
    assert server.requests == 3
    # a known kid needs no fetch at all
    assert check.verify(rsa_key.token(claims(clock))).kind == "jwt"
    assert server.requests == 3


def test_cached_knows_a_token_only_after_verify(
    server: JwksServer, clock: Clock, rsa_key: Key
) -> None:
    check = verifier(server, clock)
    token = rsa_key.token(claims(clock))
    assert check.cached(token) is None
    principal = check.verify(token)
    assert check.cached(token) == principal
    assert check.cached(rsa_key.token(claims(clock, oid="someone-else"))) is None


def test_cached_forgets_a_token_once_it_expired(
    server: JwksServer, clock: Clock, rsa_key: Key
) -> None:
    check = verifier(server, clock)
    token = rsa_key.token(claims(clock, exp=int(clock.now) + 100))
    principal = check.verify(token)
    clock.now += 100 + 59  # within the leeway
    assert check.cached(token) == principal
    clock.now += 1
    assert check.cached(token) is None
    assert refused(check, token).detail == "the token has expired"


def test_the_token_cache_is_bounded(server: JwksServer, clock: Clock, rsa_key: Key) -> None:
    check = verifier(server, clock)
    check.max_cached_tokens = 2
    tokens = [rsa_key.token(claims(clock, oid=f"user-{i}")) for i in range(3)]
    for token in tokens:
        check.verify(token)
    assert check.cached(tokens[0]) is None  # the oldest went
    assert [check.cached(t).subject for t in tokens[1:]] == [  # type: ignore[union-attr]
        f"jwt:{TENANT}/user-1",
        f"jwt:{TENANT}/user-2",
    ]


def test_a_jku_header_is_never_followed(
    server: JwksServer, clock: Clock, rsa_key: Key, attacker_key: Key
) -> None:
    elsewhere = JwksServer()
    elsewhere.document = {"keys": [attacker_key.jwk]}
    try:
        check = verifier(server, clock)
        forged = attacker_key.token(claims(clock, roles=["admin"]), jku=elsewhere.url)
        assert refused(check, forged).detail == "the token's signing key is unknown"
        # a genuine token with a jku is checked with the configured keys, as if it had none
        genuine = rsa_key.token(claims(clock), jku=elsewhere.url, x5u=elsewhere.url)
        assert check.verify(genuine).subject == f"jwt:{TENANT}/{OID}"
        assert elsewhere.requests == 0
    finally:
        elsewhere.close()


def test_an_embedded_jwk_header_is_never_used(
    server: JwksServer, clock: Clock, rsa_key: Key, attacker_key: Key
) -> None:
    forged = jwt.encode(
        claims(clock, roles=["admin"]),
        attacker_key.private,
        algorithm="RS256",
        headers={"kid": rsa_key.kid, "jwk": attacker_key.jwk},
    )
    assert refused(verifier(server, clock), forged).detail == "the token's signature is invalid"


def test_a_token_without_kid_is_accepted_only_from_a_single_key_jwks(
    server: JwksServer, clock: Clock, rsa_key: Key
) -> None:
    token = jwt.encode(claims(clock), rsa_key.private, algorithm="RS256")
    assert "kid" not in jwt.get_unverified_header(token)
    assert refused(verifier(server, clock), token).detail == "the token's signing key is unknown"
    server.document = {"keys": [rsa_key.jwk]}
    assert verifier(server, clock).verify(token).subject == f"jwt:{TENANT}/{OID}"


def test_a_failed_refetch_keeps_the_old_keys(
    server: JwksServer, clock: Clock, rsa_key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    check = verifier(server, clock, jwks_max_age_seconds=60)
    check.prefetch()
    server.status = 500
    clock.now += 61  # the keys are old: the next verify fetches again, and fails
    with caplog.at_level(logging.WARNING, logger="digital_finance.service.auth.jwt_bearer"):
        principal = check.verify(rsa_key.token(claims(clock)))
    assert principal.subject == f"jwt:{TENANT}/{OID}"
    assert server.requests == 2
    assert any("keeping the 2 key(s)" in r.getMessage() for r in caplog.records)


def test_prefetch_says_clearly_when_the_jwks_cannot_be_used(
    server: JwksServer, clock: Clock
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/keys"
    with pytest.raises(JwksError, match="cannot be fetched") as info:
        JwtVerifier(settings(server, jwks_url=closed), clock=clock).prefetch()
    assert isinstance(info.value, ValueError)
    server.document = {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "shared"}]}
    with pytest.raises(JwksError, match="no usable signing key"):
        verifier(server, clock).prefetch()


def test_keys_that_cannot_be_fetched_are_a_503_not_the_callers_fault(
    server: JwksServer, clock: Clock, rsa_key: Key
) -> None:
    server.status = 503
    check = verifier(server, clock)
    token = rsa_key.token(claims(clock))
    for _ in range(3):
        with pytest.raises(AuthError) as info:
            check.verify(token)
        assert info.value.status == 503
    assert server.requests == 1  # failed fetches are throttled by the cooldown too


@pytest.mark.parametrize("missing", ["issuer", "audiences", "jwks_url"])
def test_a_missing_setting_is_named(server: JwksServer, missing: str) -> None:
    empty: Any = [] if missing == "audiences" else None
    with pytest.raises(ValueError, match=rf"\[api\.jwt\] {missing}"):
        JwtVerifier(settings(server, **{missing: empty}))
