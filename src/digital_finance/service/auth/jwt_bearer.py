"""Bearer JWTs from an OpenID Connect issuer (Entra ID), checked offline against its JWKS.

The service trusts exactly one issuer, the keys that issuer publishes at its `jwks_uri`, and
the asymmetric algorithms `[api.jwt] algorithms` names. Everything a token says about how to
check it is data chosen by whoever made it, so it is used only to pick among what is trusted
already: `alg` must be on the allowlist (`none` and HS* never are: an HMAC "signature" keyed
with the issuer's public key is forgeable by anyone holding the public JWKS), `kid` picks
one of the issuer's keys, and `jku`, `x5u` and an embedded `jwk` are never read.

The keys are fetched when first needed (or at startup, `prefetch`), again once they are
older than `jwks_max_age_seconds`, and when a token names an unknown `kid` (the issuer
rotated its keys) at most once per `jwks_cooldown_seconds`, so tokens with made-up kids
cannot make the service hammer the issuer. A failed refetch keeps the keys it had.

A token verified once is remembered (by its hash) until it expires, so the service can
answer most requests on the event loop with `cached` and verify on a thread only on a
miss. A remembered token stays accepted until its `exp` even if the issuer drops its key
meanwhile; Entra's access tokens live about an hour.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from digital_finance.errors import TerminalError
from digital_finance.service.auth.principal import AuthError, Principal

try:
    import jwt
except ImportError as exc:  # the `api` extra is not installed
    raise TerminalError("bearer tokens need PyJWT: pip install 'digital-finance[api]'") from exc

if TYPE_CHECKING:
    from digital_finance.settings import JwtSettings

log = logging.getLogger(__name__)

# the only algorithms a token may name: `JwtAlgorithm` in settings.py, checked here again
# so that no configuration, however written, can let `none` or an HMAC algorithm through
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})  # "oct" (a shared secret) is never a signing key
MAX_JWKS_BYTES = 1024 * 1024
FETCH_TIMEOUT_SECONDS = 5.0
MAX_TOKEN_CHARS = 32 * 1024  # Entra tokens with many groups stay under 8 KiB
CACHED_TOKENS = 10_000
_REQUIRED = ["exp", "nbf", "iss", "aud"]
_NAME_CLAIMS = ("preferred_username", "upn", "appid", "azp", "sub")
_UNAVAILABLE = "the token's signing keys cannot be fetched from its issuer now; try again later"

_SETTING_HINTS = {
    "issuer": "the issuer's `iss`, e.g. https://login.microsoftonline.com/<tenant id>/v2.0",
    "audiences": "the accepted `aud` values, e.g. the app's client id or App ID URI",
    "jwks_url": "the issuer's `jwks_uri`, e.g. "
    "https://login.microsoftonline.com/<tenant id>/discovery/v2.0/keys",
}


class JwtConfigError(TerminalError, ValueError):
    """`[api.jwt]` cannot be used as written; the message names the key to set."""


class JwksError(TerminalError, ValueError):
    """The issuer's JWKS cannot be fetched or holds no usable signing key."""


@dataclass(frozen=True)
class _KeySet:
    """The issuer's usable signing keys, as published, and when they were fetched."""

    keys: tuple[Mapping[str, Any], ...]
    fetched_at: float
    by_kid: dict[str, Mapping[str, Any]] = field(init=False, compare=False)
    # (kid, alg) -> key bound to that algorithm; building an RSA key costs tens of µs
    _bound: dict[tuple[str | None, str], jwt.PyJWK] = field(
        init=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        by_kid: dict[str, Mapping[str, Any]] = {}
        for key in self.keys:
            kid = key.get("kid")
            if isinstance(kid, str):
                by_kid.setdefault(kid, key)
        object.__setattr__(self, "by_kid", by_kid)

    def find(self, kid: str | None) -> Mapping[str, Any] | None:
        """The key a token's `kid` names; without one, the only key if there is one."""
        if kid is None:
            return self.keys[0] if len(self.keys) == 1 else None
        return self.by_kid.get(kid)

    def bound(self, kid: str | None, key: Mapping[str, Any], alg: str) -> jwt.PyJWK:
        """The key, usable with `alg` only; `jwt.PyJWTError` if its type does not fit it.

        PyJWT checks the key type while building (an RSA key never becomes an EC or HMAC
        key) and refuses a token whose `alg` differs from the one the key is bound to.
        """
        found = self._bound.get((kid, alg))
        if found is None:
            found = jwt.PyJWK.from_dict(dict(key), algorithm=alg)
            self._bound[(kid, alg)] = found  # a race builds it twice, harmlessly
        return found


class JwtVerifier:
    """Turns a bearer JWT into a `Principal`, or refuses it with an `AuthError` (401).

    `verify` is thread-safe and may block on a JWKS fetch (up to 5 s); `cached` never
    blocks. `fetch(url)` returns the JWKS document's bytes (default: HTTP(S) GET).
    """

    def __init__(
        self,
        settings: JwtSettings,
        *,
        fetch: Callable[[str], bytes] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        issuer, audiences, jwks_url = settings.issuer, settings.audiences, settings.jwks_url
        for key, value in (("issuer", issuer), ("audiences", audiences), ("jwks_url", jwks_url)):
            if not value:
                raise JwtConfigError(
                    f"bearer tokens need [api.jwt] {key}: set it to {_SETTING_HINTS[key]}"
                )
        if not issuer or not jwks_url:  # said above; spelled out for the type checker
            raise JwtConfigError("bearer tokens need [api.jwt] issuer and jwks_url")
        algorithms = tuple(a for a in settings.algorithms if a in ASYMMETRIC_ALGORITHMS)
        if not algorithms:
            raise JwtConfigError(
                "[api.jwt] algorithms names no asymmetric algorithm; Entra ID signs with RS256"
            )
        url = urllib.parse.urlsplit(jwks_url)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise JwtConfigError(f"[api.jwt] jwks_url must be an https:// URL, not {jwks_url!r}")
        if url.scheme == "http" and url.hostname not in ("localhost", "127.0.0.1", "::1"):
            # anyone on the path could hand the service their own keys
            log.warning("[api.jwt] jwks_url %s is plain http: use https", jwks_url)
        self._issuer = issuer
        self._audiences = tuple(audiences)
        self._url = jwks_url
        self._algorithms = algorithms
        self._tenants = frozenset(settings.tenants)
        self._leeway = settings.leeway_seconds
        self._max_age = settings.jwks_max_age_seconds
        self._cooldown = settings.jwks_cooldown_seconds
        self._fetch = fetch or fetch_jwks
        self._clock = clock
        self.max_cached_tokens = CACHED_TOKENS
        self._keys: _KeySet | None = None
        self._last_fetch: float | None = None  # when a fetch was last tried, failed or not
        self._fetch_lock = threading.Lock()  # one fetch at a time
        self._cache: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._cache_lock = threading.Lock()  # held for dictionary operations only

    def prefetch(self) -> None:
        """Fetch the keys now (at startup), so a wrong `jwks_url` stops the service before
        its first request; `JwksError` (a `ValueError`) says why."""
        with self._fetch_lock:
            self._refresh()

    def cached(self, token: str) -> Principal | None:
        """The caller, if this exact token was verified before and has not expired; never
        blocks, so it can run on the event loop."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = _digest(token)
        now = self._clock()
        with self._cache_lock:
            entry = self._cache.get(digest)
            if entry is None:
                return None
            principal, exp = entry
            if now >= exp + self._leeway:
                del self._cache[digest]
                return None
            return principal

    def verify(self, token: str) -> Principal:
        """The caller the token names, once every rule holds; `AuthError` otherwise."""
        known = self.cached(token)
        if known is not None:
            return known
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise AuthError.invalid_token("the token is malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError.invalid_token("the token is malformed") from None
        alg = header.get("alg")
        # refused by name before anything else, whatever the allowlist says
        if (
            not isinstance(alg, str)
            or alg.lower() == "none"
            or alg.upper().startswith("HS")
            or alg not in self._algorithms
        ):
            raise AuthError.invalid_token("the token's signing algorithm is not accepted")
        kid = header.get("kid")  # a string: PyJWT refused any other type
        key = self._key(kid, alg)
        claims = self._decode(token, key)
        exp = self._check_times(claims)
        if self._tenants and not (
            isinstance(claims.get("tid"), str) and claims["tid"] in self._tenants
        ):
            raise AuthError.invalid_token("the token's tenant is not accepted")
        principal = _principal(claims)
        self._remember(token, principal, exp)
        return principal

    def _key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        keys = self._current()
        found = keys.find(kid)
        if found is None and kid is not None:
            keys = self._refetch_for(kid, keys)
            found = keys.find(kid)
        if found is None:
            raise AuthError.invalid_token("the token's signing key is unknown")
        published = found.get("alg")
        if published is not None and published != alg:
            raise AuthError.invalid_token("the token's signing algorithm does not fit its key")
        try:
            return keys.bound(kid, found, alg)
        except jwt.PyJWTError:
            raise AuthError.invalid_token(
                "the token's signing algorithm does not fit its key"
            ) from None

    def _current(self) -> _KeySet:
        """The keys, fetched if there are none yet; refreshed if old and no other thread
        is refreshing them (then the old ones serve meanwhile)."""
        keys = self._keys
        if keys is None:
            with self._fetch_lock:
                keys = self._keys
                if keys is None:
                    if not self._may_fetch(self._clock()):
                        raise AuthError.unavailable(_UNAVAILABLE)
                    try:
                        keys = self._refresh()
                    except JwksError as exc:
                        log.warning("%s", exc)
                        raise AuthError.unavailable(_UNAVAILABLE) from None
            return keys
        now = self._clock()
        if now - keys.fetched_at < self._max_age or not self._may_fetch(now):
            return keys
        if self._fetch_lock.acquire(blocking=False):
            try:
                if self._keys is keys and self._may_fetch(self._clock()):
                    self._try_refresh(keys, "they are older than [api.jwt] jwks_max_age_seconds")
            finally:
                self._fetch_lock.release()
        return self._keys or keys

    def _refetch_for(self, kid: str, keys: _KeySet) -> _KeySet:
        """The keys after fetching them again for an unknown `kid`, unless another fetch
        happened within the cooldown (then the token is refused)."""
        with self._fetch_lock:
            latest = self._keys or keys
            if latest.find(kid) is not None or not self._may_fetch(self._clock()):
                return latest
            return self._try_refresh(latest, "a token names a key id they do not hold")

    def _may_fetch(self, now: float) -> bool:
        return self._last_fetch is None or now - self._last_fetch >= self._cooldown

    def _refresh(self) -> _KeySet:
        """Fetch the keys (holding `_fetch_lock`); `JwksError` if that fails."""
        now = self._clock()
        self._last_fetch = now
        try:
            data = self._fetch(self._url)
        except JwksError:
            raise
        except Exception as exc:  # `fetch` is pluggable: whatever it raises means "not now"
            raise JwksError(f"the JWKS at {self._url} cannot be fetched: {exc}") from exc
        keys = _KeySet(parse_jwks(data, self._url), now)
        self._keys = keys
        log.info("fetched %d signing key(s) from %s", len(keys.keys), self._url)
        return keys

    def _try_refresh(self, keys: _KeySet, why: str) -> _KeySet:
        log.info("fetching the JWKS again: %s", why)
        try:
            return self._refresh()
        except JwksError as exc:
            log.warning("%s; keeping the %d key(s) fetched before", exc, len(keys.keys))
            return keys

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=list(self._algorithms),
                audience=list(self._audiences),
                issuer=self._issuer,
                options={
                    "require": _REQUIRED,
                    # times are checked by `_check_times` on the verifier's clock, the one
                    # `cached` uses too
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError.invalid_token(
                f"the token lacks the required claim {exc.claim}"
            ) from None
        except jwt.InvalidAudienceError:
            raise AuthError.invalid_token("the token's audience is not accepted") from None
        except jwt.InvalidIssuerError:
            raise AuthError.invalid_token("the token's issuer is not accepted") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError.invalid_token("the token's signing algorithm is not accepted") from None
        except jwt.InvalidSignatureError:
            raise AuthError.invalid_token("the token's signature is invalid") from None
        except jwt.InvalidKeyError:
            raise AuthError.invalid_token(
                "the token's signing algorithm does not fit its key"
            ) from None
        except jwt.DecodeError:
            raise AuthError.invalid_token("the token is malformed") from None
        except jwt.PyJWTError:  # a `sub` or `jti` of the wrong type, a bad `crit`
            raise AuthError.invalid_token("the token's claims are invalid") from None

    def _check_times(self, claims: Mapping[str, Any]) -> float:
        """`exp`, once `exp`, `nbf` and `iat` hold on the verifier's clock (± leeway)."""
        now = self._clock()
        exp = _number(claims, "exp")
        if now >= exp + self._leeway:
            raise AuthError.invalid_token("the token has expired")
        if _number(claims, "nbf") > now + self._leeway:
            raise AuthError.invalid_token("the token is not valid yet")
        if claims.get("iat") is not None and _number(claims, "iat") > now + self._leeway:
            raise AuthError.invalid_token("the token is not valid yet")
        return exp

    def _remember(self, token: str, principal: Principal, exp: float) -> None:
        digest = _digest(token)
        with self._cache_lock:
            self._cache[digest] = (principal, exp)
            self._cache.move_to_end(digest)
            while len(self._cache) > self.max_cached_tokens:
                self._cache.popitem(last=False)  # the oldest


def fetch_jwks(url: str) -> bytes:
    """The document at `url` (http or https), at most 1 MiB and one byte more (refused)."""
    if urllib.parse.urlsplit(url).scheme not in ("https", "http"):
        raise JwksError(f"the JWKS URL must be https:// or http://, not {url!r}")
    # S310 warns of file:// and custom schemes: the scheme is checked just above
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310
        data: bytes = response.read(MAX_JWKS_BYTES + 1)
    return data


def parse_jwks(data: bytes, url: str) -> tuple[Mapping[str, Any], ...]:
    """The usable signing keys of a JWKS document; `JwksError` if there are none."""
    if len(data) > MAX_JWKS_BYTES:
        raise JwksError(f"the JWKS at {url} is larger than 1 MiB")
    try:
        document = json.loads(data)
    except ValueError:
        raise JwksError(f"the JWKS at {url} is not JSON") from None
    items = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise JwksError(f'the JWKS at {url} holds no "keys" list')
    usable = []
    for item in items:
        if (
            not isinstance(item, dict)
            or item.get("kty") not in _KEY_TYPES
            or item.get("use", "sig") != "sig"  # an encryption key never checks a signature
            or not isinstance(item.get("kid", ""), str)
        ):
            continue
        try:
            jwt.PyJWK.from_dict(item)  # the key material is well formed
        except jwt.PyJWTError:
            continue
        usable.append(item)
    if not usable:
        raise JwksError(f"the JWKS at {url} holds no usable signing key (RSA, EC or OKP)")
    return tuple(usable)


def _principal(claims: Mapping[str, Any]) -> Principal:
    tenant = _text(claims, "tid")
    # Entra's `oid` names the user or app across every app of the tenant; `sub` is per app
    who = _text(claims, "oid") or _text(claims, "sub")
    if not who:
        raise AuthError.invalid_token("the token lacks the required claim sub")
    name = next((value for c in _NAME_CLAIMS if (value := _text(claims, c))), who)
    roles: set[str] = set()
    granted = claims.get("roles")  # app roles
    if isinstance(granted, list):
        roles.update(r for r in granted if isinstance(r, str))
    scopes = claims.get("scp")  # delegated scopes, space-separated
    if isinstance(scopes, str):
        roles.update(scopes.split())
    return Principal(f"jwt:{tenant}/{who}", name, "jwt", frozenset(roles))


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    return value if isinstance(value, str) else ""


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuthError.invalid_token(f"the token's claim {name} is not a number")
    return float(value)


def _digest(token: str) -> bytes:
    # the cache is keyed by a hash: 32 bytes a token whatever its size, and the cache
    # holds no bearer token a memory dump could replay
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
