"""Where a lakehouse lives: a local folder or an object-store URI, with the options to reach it.

One `Location` type is passed to every table read and write (deltalake takes the URI and the
options; the files DuckDB writes are uploaded with obstore, the Python binding of the same
`object_store` crate), so local folders, `abfss://container@account.dfs.core.windows.net/…`
and `az://container/…` are handled by the same code. Credentials come from `options` or,
as for delta-rs and the Azure SDKs, from the standard environment variables:
`AZURE_STORAGE_ACCOUNT_NAME` with `AZURE_STORAGE_ACCOUNT_KEY` or `AZURE_STORAGE_SAS_TOKEN`, a
service principal (`AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_TENANT_ID`), a managed
identity, `AZURE_USE_AZURE_CLI=true`; `AZURE_STORAGE_USE_EMULATOR=true` for Azurite
(docs/STORAGE.md).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# schemes that object_store (and so delta-rs and obstore) reach
REMOTE_SCHEMES = ("abfss://", "abfs://", "az://", "adl://", "azure://", "s3://", "gs://")


class StorageError(ValueError):
    """A location that cannot be used; the message says why."""


# characters delta-rs (1.6) refuses or mis-reads in a local table path (measured, see
# tests/e2e/test_hostile_paths.py: `[` panics, `%3C` is read as `<`, `#` loses the history);
# input files may hold them, the lakehouse's path may not
UNADDRESSABLE = "\\\n\t[]|%#?"


@dataclass(frozen=True)
class Location:
    """A folder of a lakehouse: an absolute local path or a URI, plus storage options."""

    uri: str
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str | Path, options: Mapping[str, str] | None = None) -> Location:
        """A location from a path (made absolute, links resolved) or a URI (`file://` is a
        local path)."""
        raw = str(text)
        pairs = tuple(sorted((options or {}).items()))
        if raw.startswith("file://"):
            raw = raw.removeprefix("file://")
        if "://" in raw:
            if not raw.startswith(REMOTE_SCHEMES):
                known = ", ".join(s.removesuffix("://") for s in REMOTE_SCHEMES)
                raise StorageError(f"{raw}: unknown storage scheme; use a folder or one of {known}")
            return cls(raw.rstrip("/"), pairs)
        # resolved, as delta-rs resolves a table's folder: the files it names must be found
        # under this path, also where the lakehouse is reached through a symbolic link
        folder = str(Path(raw).expanduser().resolve())
        unusable = sorted({c for c in folder if c in UNADDRESSABLE})
        if unusable:
            shown = ", ".join(repr(c) for c in unusable)
            raise StorageError(
                f"{folder!r} holds {shown}, which delta-rs cannot address in a local path; "
                "put the lakehouse in a folder whose path has none of "
                + ", ".join(repr(c) for c in UNADDRESSABLE)
            )
        return cls(folder, pairs)

    @property
    def is_local(self) -> bool:
        """Whether this is a folder on a local (or mounted) file system."""
        return "://" not in self.uri

    @property
    def path(self) -> Path:
        """The local folder; only for local locations."""
        if not self.is_local:
            raise StorageError(f"{self.uri} is not a local folder")
        return Path(self.uri)

    @property
    def storage_options(self) -> dict[str, str] | None:
        """The options for deltalake and obstore, None when there are none."""
        return dict(self.options) or None

    def child(self, relative: str) -> Location:
        """A location below this one."""
        return Location(self.uri.rstrip("/") + "/" + relative.strip("/"), self.options)

    def scratch(self, name: str) -> Path:
        """A local folder for temporary files of work on this location (spill, uploads).

        Under `_staging/` for a local lakehouse; in the system's temp folder for a remote one,
        keyed by the URI, so work on two lakehouses never meets.
        """
        if self.is_local:
            return self.path / "_staging" / name
        key = hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "digital-finance" / key / name

    def store(self) -> Any:
        """An obstore store rooted here (remote locations)."""
        from obstore.store import from_url

        return from_url(self.uri, config=dict(self.options) or None)  # type: ignore[arg-type]

    def upload(self, local: Path, relative: str) -> None:
        """Put a local file at `relative` below this location (remote locations)."""
        import obstore

        with open(local, "rb") as f:
            obstore.put(self.store(), relative, f)

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        # option values may be keys and tokens: a repr lands in logs and tracebacks
        names = ", ".join(k for k, _ in self.options)
        return f"Location({self.uri!r}, options: {names or 'none'})"


def location(text: str | Path | Location, options: Mapping[str, str] | None = None) -> Location:
    """A `Location` from whatever a caller holds."""
    if isinstance(text, Location):
        return text
    return Location.parse(text, options)


def refused_by_store(exc: BaseException) -> bool:
    """Whether an object store's error needs a person (credentials, permissions, a missing
    container, a bad option) rather than another try (a timeout, a server error).

    object_store reports a missing container or a refused request as a generic error with
    the HTTP status in its text, so the status is read from there too.
    """
    import re

    from obstore.exceptions import (
        InvalidPathError,
        NotSupportedError,
        PermissionDeniedError,
        UnauthenticatedError,
        UnknownConfigurationKeyError,
    )

    refusals = (
        InvalidPathError,
        NotSupportedError,
        PermissionDeniedError,
        UnauthenticatedError,
        UnknownConfigurationKeyError,
        ValueError,
        FileNotFoundError,
    )
    if isinstance(exc, refusals):
        return True
    return re.search(r"status code: (400|401|403|404)\b", str(exc)) is not None
