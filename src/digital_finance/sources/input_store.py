"""Where input files are read from: local paths, or objects behind an object-store URI.

An input's path is what lineage records (`source_file`) and what `_system/batches` knows it
by: an absolute local path, or a URI such as `az://landing/stocks/2024-03-15.jsonl` or
`abfss://landing@account.dfs.core.windows.net/stocks/…`. Everything that touches an input's
bytes (listing, the content scan, the reader, the resume check) goes through one
`InputStore`, so a file in a container is planned, known by content, read from a position
and resumed exactly like a file on disk.

Objects are reached with obstore (the `object_store` crate that delta-rs uses too) with the
storage options of the settings layer (`[storage] options`) and, as for delta-rs, the
standard `AZURE_STORAGE_*` / `AZURE_CLIENT_*` environment variables (docs/STORAGE.md).
Reads are ranged GETs streamed in chunks, so a part of an object costs what it holds and
memory stays bounded however large the object is.
"""

from __future__ import annotations

import fnmatch
import io
import re
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from digital_finance.errors import TransientError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from digital_finance.sources.discovery import InputFile
    from digital_finance.sources.file_scan import FileScan

_GLOB = "*?["
_CHUNK = 8 * 1024 * 1024  # what one streamed piece of a ranged GET holds at least


def is_uri(path: str) -> bool:
    """Whether `path` names an object behind a URI rather than a local file."""
    return "://" in path and not path.startswith("file://")


def split_uri(uri: str) -> tuple[str, str]:
    """(`scheme://authority`, key): the store's root and the object's key below it."""
    scheme, _, rest = uri.partition("://")
    authority, _, key = rest.partition("/")
    if not authority:
        from digital_finance.sources.discovery import InputError

        raise InputError(f"{uri}: no container or bucket after {scheme}://")
    return f"{scheme}://{authority}", key


@lru_cache(maxsize=32)
def _store(root: str, options: tuple[tuple[str, str], ...]) -> Any:
    from obstore.store import from_url

    return from_url(root, config=dict(options) or None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class InputStore:
    """Opens, stats and lists inputs: local paths directly, URIs through obstore."""

    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def with_options(cls, options: Mapping[str, str] | None) -> InputStore:
        """A store that reaches objects with these storage options (delta-rs's keys)."""
        return cls(tuple(sorted((options or {}).items())))

    def open(self, path: str, start: int = 0, end: int | None = None) -> io.RawIOBase:
        """A raw stream of bytes [start, end) of the input (to its end when `end` is None)."""
        if not is_uri(path):
            f = open(path, "rb", buffering=0)  # noqa: SIM115 - the caller closes it
            f.seek(start)
            return f
        root, key = split_uri(path)
        return _ObjectStream(_store(root, self.options), key, start, end, path)

    def stat(self, path: str) -> InputFile:
        """The input as it is now; `FileNotFoundError` when it is gone."""
        from digital_finance.sources.discovery import InputFile

        if not is_uri(path):
            return InputFile.stat_path(path)
        import obstore

        root, key = split_uri(path)
        with _reaching(path):
            return _listed(root, obstore.head(_store(root, self.options), key))

    def size(self, path: str) -> int:
        """The input's size in bytes now."""
        return self.stat(path).size

    def scan(self, path: str, size: int, at: int | None = None) -> FileScan:
        """`sources.file_scan.scan_file` through this store."""
        from digital_finance.sources.file_scan import scan_file

        return scan_file(path, size, at, self)

    def matching(self, pattern: str) -> list[InputFile]:
        """The input objects a URI names: one object, every input below a folder-like prefix,
        or the objects a glob matches (`*`, `?`, `[…]` in the key; `**` crosses `/`)."""
        root, key = split_uri(pattern)
        with _reaching(pattern):
            return self._matching(root, key, pattern)

    def _matching(self, root: str, key: str, pattern: str) -> list[InputFile]:
        import obstore

        from digital_finance.sources.discovery import InputError, is_input_name

        store = _store(root, self.options)
        glob_at = min((key.find(c) for c in _GLOB if c in key), default=-1)
        if glob_at < 0:
            if key and not key.endswith("/"):
                try:  # a named object is taken as it is, whatever its name
                    return [_listed(root, obstore.head(store, key))]
                except FileNotFoundError:
                    pass
            found = self._below(root, key)
            if not found:
                raise InputError(
                    f"{pattern!r} names no object, and no .json, .jsonl or .ndjson objects "
                    "(optionally .gz) lie below it"
                )
            return found
        prefix = key[: key.rfind("/", 0, glob_at) + 1]
        matched = [
            _listed(root, meta)
            for meta in _objects(store, prefix)
            if _glob_match(meta["path"], key) and is_input_name(meta["path"])
        ]
        if not matched:
            raise InputError(f"no object matches {pattern!r}")
        return matched

    def below(self, folder: str) -> list[InputFile]:
        """Every input object below a folder-like URI; none when nothing is there yet."""
        root, key = split_uri(folder)
        with _reaching(folder):
            return self._below(root, key)

    def _below(self, root: str, key: str) -> list[InputFile]:
        from digital_finance.sources.discovery import is_input_name

        prefix = key.strip("/") + "/" if key.strip("/") else ""
        store = _store(root, self.options)
        return [_listed(root, m) for m in _objects(store, prefix) if is_input_name(m["path"])]


class InputUnreachableError(TransientError):
    """A store could not be read just now (a timeout, a server error); running the same
    command again may succeed, and nothing was committed that a retry would double."""


@contextmanager
def _reaching(uri: str) -> Iterator[None]:
    """The store's refusals as input errors: a person must act on credentials, a missing
    container or a bad option (terminal); a timeout or a server error may pass (transient).
    A missing object stays `FileNotFoundError` for the caller."""
    from obstore.exceptions import BaseError

    from digital_finance.lakehouse.storage import refused_by_store
    from digital_finance.sources.discovery import InputError

    try:
        yield
    except (BaseError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if refused_by_store(exc):
            raise InputError(
                f"{uri} cannot be reached: {first}; check that the container exists and the "
                "storage options ([storage] options or the AZURE_STORAGE_* variables, "
                "docs/STORAGE.md)"
            ) from exc
        raise InputUnreachableError(
            f"{uri} could not be read just now ({first}); run again"
        ) from exc


def _objects(store: Any, prefix: str) -> Iterator[Any]:
    import obstore

    try:
        for page in obstore.list(store, prefix or None, chunk_size=1000):
            yield from page
    except FileNotFoundError:
        return  # a container with nothing under the prefix


def _glob_match(key: str, pattern: str) -> bool:
    """`*`, `?` and `[…]` within one `/`-separated level; `**` any number of levels (as a
    shell's globstar and Python's recursive glob)."""
    return _glob_regex(pattern).fullmatch(key) is not None


@lru_cache(maxsize=64)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            # fnmatch's reading of one bracket class, kept within the level
            out.append(fnmatch.translate(pattern[i : end + 1])[4:-3].replace("/", ""))
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _listed(root: str, meta: Any) -> InputFile:
    """An object as listed. Stores give its modification time to the second, so an object
    rewritten within that second with the same size would keep its (size, time) fingerprint
    and never be read again: the sub-second digits, which the store leaves at zero, carry a
    hash of the ETag instead (a new one on every write). The time stays within its second,
    which is all the landing folder's settle rule compares at."""
    from digital_finance.sources.discovery import InputFile

    seconds = int(meta["last_modified"].timestamp())
    tag = str(meta.get("e_tag") or "")
    return InputFile(
        f"{root}/{meta['path']}",
        int(meta["size"]),
        seconds * 1_000_000_000 + zlib.crc32(tag.encode()) % 1_000_000_000,
    )


class _ObjectStream(io.RawIOBase):
    """Bytes [start, end) of an object, read as one ranged GET streamed in chunks."""

    def __init__(
        self, store: Any, key: str, start: int, end: int | None, uri: str | None = None
    ) -> None:
        self._store, self._key, self._uri = store, key, uri or key
        self._start, self._end = start, end
        self._chunks: Iterator[Any] | None = None
        self._chunk: memoryview = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bool:
        with _reaching(self._uri):
            return self._pull()

    def _pull(self) -> bool:
        if self._chunks is None:
            import obstore

            if self._end is not None and self._end <= self._start:
                return False  # an empty range: object stores refuse to serve one
            whole = self._start == 0 and self._end is None
            options: dict[str, Any] = (
                {}
                if whole
                else {"range": (self._start, self._end)}
                if self._end is not None
                else {"range": {"offset": self._start}}
            )
            result = obstore.get(self._store, self._key, options=options)  # type: ignore[arg-type]
            self._chunks = iter(result.stream(min_chunk_size=_CHUNK))
        for piece in self._chunks:
            if len(piece):
                self._chunk = memoryview(piece)
                return True
        return False

    def readinto(self, buffer: WriteableBuffer) -> int:
        with memoryview(buffer) as view:
            if not len(view):
                return 0
            if not len(self._chunk) and not self._next_chunk():
                return 0
            n = min(len(view), len(self._chunk))
            view[:n] = self._chunk[:n]
            self._chunk = self._chunk[n:]
            return n

    def close(self) -> None:
        self._chunks = None
        self._chunk = memoryview(b"")
        super().close()
