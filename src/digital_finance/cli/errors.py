"""What the CLI says when a command fails unexpectedly: the cause and the fix, not a traceback.

Expected refusals are raised as `fail(...)` by the commands themselves. This layer catches
what escapes them: file-system errors (a full disk, a read-only folder, a file where a
folder should be), the library's own typed errors, and, last, anything else, which is a bug
and says so. `--debug` (or `DIGITAL_FINANCE_DEBUG=1`) prints the traceback as well.
"""

from __future__ import annotations

import errno
import os
import traceback

from digital_finance.cli.console import err_console
from digital_finance.errors import DigitalFinanceError

EXIT_USAGE = 2
EXIT_TRY_AGAIN = 75
EXIT_BUG = 70  # EX_SOFTWARE: not the user's mistake

_HINTS = {
    errno.ENOSPC: "the disk is full: free some space and run the same command again "
    "(nothing half-written is ever used; the next run finishes the batch)",
    errno.EDQUOT: "the disk quota is used up: free some space and run the command again",
    errno.EACCES: "permission denied: check the folder's permissions, or choose another "
    "folder with --output",
    errno.EPERM: "not permitted: check the permissions, or choose another folder",
    errno.EROFS: "the file system is read-only: choose a writable folder with --output",
    errno.ENOTDIR: "a file stands where a folder is needed: choose a folder for --output",
    errno.EEXIST: "a file already stands where a folder is needed: choose another --output",
    errno.EISDIR: "a folder stands where a file is needed: name a file",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter one",
}


def debugging() -> bool:
    """Whether tracebacks are wanted (`--debug` or `DIGITAL_FINANCE_DEBUG=1`)."""
    return os.environ.get("DIGITAL_FINANCE_DEBUG", "").strip().lower() in ("1", "true", "yes")


def report(exc: BaseException) -> int:
    """Print what went wrong in a line or two; the exit code."""
    if debugging():
        traceback.print_exception(exc)
    found = _os_error(exc)
    if found is not None:
        where = f"{found.filename}: " if found.filename else ""
        hint = _HINTS.get(found.errno or -1, found.strerror or str(found))
        _say(f"{where}{hint}")
        return EXIT_USAGE
    if isinstance(exc, DigitalFinanceError):
        _say(str(exc))
        return EXIT_TRY_AGAIN if exc.retryable else EXIT_USAGE
    _say(
        f"unexpected {type(exc).__name__}: {exc}. This is a bug in digital-finance, not in "
        "your input: run the command again with --debug and report what it prints"
    )
    return EXIT_BUG


def _os_error(exc: BaseException) -> OSError | None:
    """The file-system error behind `exc`, through its causes; None for anything else."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    for code, words in ((errno.ENOSPC, "No space left"), (errno.EACCES, "Permission denied"),
                        (errno.EROFS, "Read-only file system"),
                        (errno.ENOTDIR, "Not a directory")):  # fmt: skip
        if words in text:  # delta-rs and DuckDB raise their own types with the OS's words
            return OSError(code, os.strerror(code), _path_in(text))
    return None


def _path_in(text: str) -> str | None:
    for token in text.replace('"', " ").replace("'", " ").split():
        if token.startswith("/"):
            return token.rstrip(":,.)\\")
    return None


def _say(message: str) -> None:
    err_console.print("error:", style="bold red", end=" ")
    err_console.print(message, markup=False)
