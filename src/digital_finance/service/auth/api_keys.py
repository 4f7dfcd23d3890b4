"""API keys for service clients: `dfk_<key id>_<secret>`, kept only as salted hashes.

The key file (`[api] keys_file`, JSON) names each key's owner and roles with a salt and the
SHA-256 of salt and secret; the secret itself is shown once, by `apikey create`, and never
written. The service checks a key on every request, so the file is kept in memory and read
again only when it changed on disk, looked at no more than once a second: a key revoked
with the CLI stops working within about a second, without a restart.

Writes replace the file whole (a temporary file in the same folder, fsynced, then renamed),
so a reader sees the old file or the new one, never half of one; two CLI invocations take
an exclusive lock on a sibling `.lock` file around read-modify-write, so neither loses the
other's key.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digital_finance.errors import TerminalError
from digital_finance.service.auth.principal import AuthError, Principal, check_role

KEY_PREFIX = "dfk_"
FILE_VERSION = 1
STAT_INTERVAL_SECONDS = 1.0
MAX_VERIFIED = 10_000  # tokens remembered as verified (then forgotten all at once)
_TOKEN = re.compile(r"dfk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")  # token_urlsafe(32): 43 chars
_NOT_VALID = "the API key is not valid"
_REVOKED = "the API key was revoked"


class ApiKeyFileError(TerminalError):
    """The key file cannot be read or written as it is; the message names it."""


class UnknownKeyError(KeyError):
    """No key has this id."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else "unknown API key"


@dataclass(frozen=True)
class KeyRecord:
    """One key as stored: who holds it, what it may do, and how to recognise its secret.

    The secret is 256 random bits, not a password a person chose, so it cannot be guessed
    and a fast salted SHA-256 is as safe as a slow key-derivation function would be; a
    slow one (bcrypt, scrypt) would cost every request tens of milliseconds for nothing.
    """

    key_id: str
    owner: str
    roles: tuple[str, ...]
    salt: str  # hex
    digest: str  # hex of sha256(salt bytes + secret bytes)
    created: str  # ISO-8601, UTC
    revoked: str | None = None  # ISO-8601, UTC

    def matches(self, secret: str) -> bool:
        """Whether `secret` is this key's, compared in constant time."""
        return hmac.compare_digest(_digest(bytes.fromhex(self.salt), secret), self.digest)


class ApiKeyStore:
    """The key file at `path`: create, list and revoke keys, and verify them fast."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()  # guards the in-memory copy below
        self._records: dict[str, KeyRecord] = {}
        self._stamp: tuple[int, int, int] | None = None  # (mtime_ns, size, inode) read
        self._checked_at: float | None = None  # when the file was last looked at
        # holders of keys verified against `_records` as they are now, by the SHA-256 of
        # the whole token (no secret is a key of it): a known token costs a lookup, not a
        # salted hash and a parse; emptied whenever the keys are read again
        self._verified: dict[bytes, Principal] = {}

    def create(self, owner: str, roles: Sequence[str]) -> tuple[KeyRecord, str]:
        """A new key for `owner` with `roles`, and its token: shown once, never stored."""
        owner = owner.strip()
        if not owner:
            raise ValueError("a key needs an owner: who or what will use it")
        if any(not c.isprintable() for c in owner):
            raise ValueError("the owner must be printable text, without control characters")
        if not roles:
            raise ValueError("a key needs at least one role")
        granted = tuple(dict.fromkeys(check_role(r) for r in roles))
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        with self._locked() as records:
            key_id = secrets.token_hex(6)
            while key_id in records:  # 48 bits: a clash is unlikely, not impossible
                key_id = secrets.token_hex(6)
            record = KeyRecord(
                key_id, owner, granted, salt.hex(), _digest(salt, secret), _now(self._clock)
            )
            records[key_id] = record
        return record, f"{KEY_PREFIX}{key_id}_{secret}"

    def list(self) -> builtins.list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        return sorted(self._read()[1].values(), key=lambda r: (r.created, r.key_id))

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke the key; revoking it again keeps the first revocation's time."""
        with self._locked() as records:
            record = records.get(key_id)
            if record is None:
                raise UnknownKeyError(f"no API key has the id {key_id!r} in {self.path}")
            if record.revoked is None:
                record = replace(record, revoked=_now(self._clock))
                records[key_id] = record
        return record

    def verify(self, token: str) -> Principal:
        """The key's holder, if `token` is a valid key that was not revoked; `AuthError`
        (401) otherwise. Fast: the file is read again only when it changed."""
        if not isinstance(token, str):
            raise AuthError.invalid_token(_NOT_VALID)
        records = self._current()
        seen = hashlib.sha256(token.encode()).digest()
        holder = self._verified.get(seen)
        if holder is not None:
            return holder
        found = _TOKEN.fullmatch(token)
        if found is None:
            raise AuthError.invalid_token(_NOT_VALID)
        key_id, secret = found.groups()
        record = records.get(key_id)
        # the key id is not secret (`apikey list` shows it), so answering an unknown one
        # faster than a wrong secret tells nothing worth hiding
        if record is None or not record.matches(secret):
            raise AuthError.invalid_token(_NOT_VALID)
        if record.revoked is not None:
            raise AuthError.invalid_token(_REVOKED)
        holder = Principal(f"key:{key_id}", record.owner, "api_key", frozenset(record.roles))
        with self._lock:
            if self._records is records:  # not read again meanwhile
                if len(self._verified) >= MAX_VERIFIED:
                    self._verified.clear()
                self._verified[seen] = holder
        return holder

    def _current(self) -> dict[str, KeyRecord]:
        """The keys in memory, read again if the file changed (looked at once a second)."""
        now = self._clock()
        with self._lock:
            if self._checked_at is not None and now - self._checked_at < STAT_INTERVAL_SECONDS:
                return self._records
            try:
                stamp = _stamp(os.stat(self.path))
            except FileNotFoundError:
                stamp = None
            except OSError as exc:
                raise AuthError.unavailable("the API keys cannot be read now") from exc
            if stamp != self._stamp:
                try:
                    stamp, records = self._read()
                except ApiKeyFileError as exc:
                    # refuse rather than keep keys that may have been revoked since; the
                    # file is read again on the next request, until it can be
                    raise AuthError.unavailable("the API keys cannot be read now") from exc
                self._stamp, self._records = stamp, records
                self._verified = {}
            self._checked_at = now
            return self._records

    def _read(self) -> tuple[tuple[int, int, int] | None, dict[str, KeyRecord]]:
        """The file's stamp and keys, from one open file, so the two always agree."""
        try:
            with open(self.path, "rb") as file:
                stamp = _stamp(os.fstat(file.fileno()))
                data = file.read()
        except FileNotFoundError:
            return None, {}  # no file: no keys yet
        except OSError as exc:
            raise ApiKeyFileError(f"the key file {self.path} cannot be read: {exc}") from exc
        return stamp, _parse(data, self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, KeyRecord]]:
        """The keys to change, written back atomically when the block ends without error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor closes
            _, records = self._read()
            yield records
            self._write(records)
        finally:
            os.close(fd)
        with self._lock:
            self._checked_at = None  # this process sees its own change at once
            self._verified = {}

    def _write(self, records: dict[str, KeyRecord]) -> None:
        document = {
            "version": FILE_VERSION,
            "keys": [_as_json(r) for r in sorted(records.values(), key=lambda r: r.created)],
        }
        data = (json.dumps(document, indent=2) + "\n").encode()
        # mkstemp creates the file with mode 0600, before a byte is written into it
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_folder(self.path.parent)  # the rename itself survives a crash


def _digest(salt: bytes, secret: str) -> str:
    return hashlib.sha256(salt + secret.encode()).hexdigest()


def _now(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), UTC).isoformat(timespec="seconds")


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _as_json(record: KeyRecord) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "owner": record.owner,
        "roles": list(record.roles),
        "salt": record.salt,
        "digest": record.digest,
        "created": record.created,
        "revoked": record.revoked,
    }


def _parse(data: bytes, path: Path) -> dict[str, KeyRecord]:
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ApiKeyFileError(f"the key file {path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("version") != FILE_VERSION:
        raise ApiKeyFileError(
            f'the key file {path} is not a version {FILE_VERSION} key file ({{"version": 1, '
            '"keys": [...]}, written by `digital-finance apikey create`)'
        )
    items = document.get("keys", [])
    if not isinstance(items, list):
        raise ApiKeyFileError(f'the key file {path}: "keys" must be a list')
    records: dict[str, KeyRecord] = {}
    for i, item in enumerate(items):
        try:
            record = KeyRecord(
                key_id=_string(item["key_id"]),
                owner=_string(item["owner"]),
                roles=tuple(_string(r) for r in item["roles"]),
                salt=_string(item["salt"]),
                digest=_string(item["digest"]),
                created=_string(item["created"]),
                revoked=None if item.get("revoked") is None else _string(item["revoked"]),
            )
            bytes.fromhex(record.salt)
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiKeyFileError(f"the key file {path}: key #{i + 1} is malformed") from exc
        records[record.key_id] = record
    return records


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
