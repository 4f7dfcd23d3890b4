"""Who may call the ingestion API: bearer JWTs (OpenID Connect) and API keys, one `Principal`.

`JwtVerifier` needs PyJWT (the `api` extra) and is imported on first use, so `apikey`
commands work without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from digital_finance.service.auth.api_keys import (
    ApiKeyFileError,
    ApiKeyStore,
    KeyRecord,
    UnknownKeyError,
)
from digital_finance.service.auth.principal import (
    KNOWN_DATASETS,
    VALID_ROLES,
    AuthError,
    Principal,
    check_role,
)

if TYPE_CHECKING:
    from digital_finance.service.auth.jwt_bearer import JwksError, JwtConfigError, JwtVerifier

__all__ = [
    "KNOWN_DATASETS",
    "VALID_ROLES",
    "ApiKeyFileError",
    "ApiKeyStore",
    "AuthError",
    "JwksError",
    "JwtConfigError",
    "JwtVerifier",
    "KeyRecord",
    "Principal",
    "UnknownKeyError",
    "check_role",
]

_LAZY = ("JwksError", "JwtConfigError", "JwtVerifier")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from digital_finance.service.auth import jwt_bearer

        return getattr(jwt_bearer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
