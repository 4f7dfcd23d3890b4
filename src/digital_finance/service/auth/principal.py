"""Who is calling, what they may do, and how a refusal is told to them.

Both ways in (bearer JWTs from an OpenID Connect issuer, API keys for service clients) end
in the same `Principal`, so the service decides by roles alone and never asks how a caller
proved who it is. The roles are few and fixed: writing one dataset's events, reading the
tables, or everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CHALLENGE = 'Bearer realm="digital-finance"'  # the `WWW-Authenticate` scheme and realm
KNOWN_DATASETS = ("stocks", "mutual_funds")

ADMIN = "admin"
TABLES_READ = "tables.read"
WRITE_PREFIX = "events.write:"
WRITE_ANY = WRITE_PREFIX + "*"

VALID_ROLES = (ADMIN, TABLES_READ, WRITE_ANY, *(WRITE_PREFIX + d for d in KNOWN_DATASETS))


def check_role(role: str) -> str:
    """The role, if it is one the service knows; a `ValueError` listing the valid ones if not.

    Checked where roles are granted (`apikey create`); a JWT's roles are the issuer's and
    are not checked, since an unknown one simply grants nothing.
    """
    if role not in VALID_ROLES:
        raise ValueError(f"unknown role {role!r}; valid roles: {', '.join(VALID_ROLES)}")
    return role


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    `subject` is stable across its requests and names it in rate limits, idempotency
    scopes and the audit log (`jwt:<tid>/<oid or sub>` or `key:<key_id>`); `name` is for
    people (a username, an app id, an API key's owner).
    """

    subject: str
    name: str
    kind: Literal["jwt", "api_key"]
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        """Whether the caller holds `admin`, which allows everything."""
        return ADMIN in self.roles

    def may_write(self, dataset: str) -> bool:
        """Whether the caller may send events of `dataset`."""
        return self.is_admin or WRITE_ANY in self.roles or WRITE_PREFIX + dataset in self.roles

    def may_read(self) -> bool:
        """Whether the caller may read the tables."""
        return self.is_admin or TABLES_READ in self.roles


class AuthError(Exception):
    """A request is refused for its credentials.

    `detail` is safe to show to the caller: it never holds a token, a key, a secret or a
    trace. `www_authenticate` is the `WWW-Authenticate` header's value (RFC 6750).
    """

    def __init__(self, status: int, detail: str, www_authenticate: str) -> None:
        super().__init__(status, detail, www_authenticate)  # all three, so it pickles
        self.status = status
        self.detail = detail
        self.www_authenticate = www_authenticate

    def __str__(self) -> str:
        return self.detail

    @classmethod
    def invalid_token(cls, detail: str) -> AuthError:
        """401 for credentials that were sent but cannot be accepted."""
        quoted = detail.replace("\\", "\\\\").replace('"', '\\"')
        return cls(401, detail, f'{CHALLENGE}, error="invalid_token", error_description="{quoted}"')

    @classmethod
    def missing(cls) -> AuthError:
        """401 for a request without credentials (RFC 6750: the challenge carries no error)."""
        return cls(401, "credentials are required: a bearer token or an API key", CHALLENGE)

    @classmethod
    def unavailable(cls, detail: str) -> AuthError:
        """503 when credentials cannot be checked now (the issuer's keys or the key file
        cannot be read): the caller's fault it is not, and trying again may help."""
        return cls(503, detail, CHALLENGE)
