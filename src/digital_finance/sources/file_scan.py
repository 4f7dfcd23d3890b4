"""Know a file by its content: one pass that hashes it and finds where an earlier read ended.

A file is identified by the SHA-256 of its bytes, not by its modification time: a touched
file with the same bytes is the same file, and a file whose first `n` bytes hash to what was
ingested before, with a line end at byte `n`, has had lines appended. The pass reads the
file once at about 1 GB/s, and only for files whose size or modification time differ from
the last read of their path. A local file is scanned by the native kernel where it is
installed (the same rules, the whole pass without the interpreter lock: scans run while the
CLI imports its libraries); this module's own pass serves inputs behind a URI.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

from digital_finance import native
from digital_finance.errors import TransientError
from digital_finance.sources.input_store import InputStore, is_uri

SCAN_BLOCK = 1024 * 1024
_LEADING = b" \t\r\n\xef\xbb\xbf"  # blanks and a byte-order mark before the first record


class FileChangedError(TransientError):
    """A file changed while it was being read; reading it again will see it as it is now."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path} changed while it was being read ({detail}); run again")
        self.path = path
        self.detail = detail

    def __reduce__(self) -> tuple[type[FileChangedError], tuple[str, str]]:
        return type(self), (self.path, self.detail)


@dataclass(frozen=True)
class FileScan:
    """What one pass over the first `size` bytes of a file found."""

    size: int
    sha256: str  # of bytes [0, size)
    appendable: bool  # plain NDJSON (not gzip, not one JSON array): a later read may resume
    prefix_sha256: str | None = None  # of bytes [0, at), when `at` was asked for
    lines_before: int = 0  # line ends in [0, at)
    line_end_at: bool = False  # byte at - 1 is a line end: a read from `at` starts a line


def _blocks(f: io.RawIOBase, path: str, start: int, count: int) -> Iterator[memoryview]:
    """The bytes [start, start + count) in blocks read into one reused buffer: a fresh 1 MB
    object a block cost a page fault every 4 KB, about a tenth of the scan's time."""
    buffer = bytearray(min(SCAN_BLOCK, count))
    done = 0
    with memoryview(buffer) as whole:
        while done < count:
            want = min(len(buffer), count - done)
            got = f.readinto(whole[:want])
            if not got:
                raise FileChangedError(path, f"it ends at byte {start + done}, not {start + count}")
            done += got
            with whole[:got] as block:
                yield block


def scan_file(
    path: str, size: int, at: int | None = None, store: InputStore | None = None
) -> FileScan:
    """Hash bytes [0, size) of `path` and, when `at` is given, bytes [0, at) on the way.

    Reading stops at `size` (what the file held when it was listed), so a file that grows
    while it is scanned is scanned as it was listed. `store` reaches inputs behind a URI.
    """
    module = native.kernel()
    if module is not None and not is_uri(path) and hasattr(module, "scan_file"):
        return _native_scan(module, path, size, at)
    return scan_in_python(path, size, at, store)


def scan_in_python(
    path: str, size: int, at: int | None = None, store: InputStore | None = None
) -> FileScan:
    """`scan_file` in Python: for inputs behind a URI, and where the kernel is missing."""
    digest = hashlib.sha256()
    head = b""  # the first two bytes (gzip's magic)
    first = b""  # the first byte that is not blank: "[" for a JSON-array file
    prefix: str | None = None
    lines_before = 0
    last = b""
    split = size if at is None or at > size else at
    counting = at is not None and at <= size
    with (store or InputStore()).open(path, 0, size) as f:
        for phase, (begin, count) in enumerate(((0, split), (split, size - split))):
            for block in _blocks(f, path, begin, count):
                head = head if len(head) >= 2 else head + bytes(block[:2])
                first = first or bytes(block).lstrip(_LEADING)[:1]
                digest.update(block)
                if phase == 0:
                    if counting:  # only a resumed read needs the line count
                        lines_before += block.tobytes().count(b"\n")
                    last = bytes(block[-1:])
            if phase == 0 and at is not None and at <= size:
                prefix = digest.hexdigest()
    appendable = not head.startswith(b"\x1f\x8b") and first != b"["
    return FileScan(
        size,
        digest.hexdigest(),
        appendable,
        prefix,
        lines_before if prefix is not None else 0,
        last == b"\n",
    )


def _native_scan(module: ModuleType, path: str, size: int, at: int | None) -> FileScan:
    try:
        ended_at, sha256, prefix, lines_before, line_end_at, head, first = module.scan_file(
            path, size, at
        )
    except (OSError, UnicodeError):
        # the kernel's error has no errno or file name (and a name that is not UTF-8 cannot
        # reach it): Python's own pass opens the file again and raises its own error
        return scan_in_python(path, size, at)
    if ended_at is not None:
        raise FileChangedError(path, f"it ends at byte {ended_at}, not {size}")
    appendable = not head.startswith(b"\x1f\x8b") and first != b"["
    return FileScan(
        size, sha256, appendable, prefix, lines_before if prefix is not None else 0, line_end_at
    )
