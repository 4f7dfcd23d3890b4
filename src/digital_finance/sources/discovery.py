"""Turn the user's PATH arguments (files, folders, globs) into an ordered list of input files."""

from __future__ import annotations

import errno
import glob
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from digital_finance.errors import TerminalError
from digital_finance.sources.input_store import InputStore, is_uri

INPUT_SUFFIXES = (".json", ".jsonl", ".ndjson")


class InputError(TerminalError):
    """The inputs named on the command line cannot be used; the message says what to change."""


@dataclass(frozen=True, order=True)
class InputFile:
    """One input file and the fingerprint that tells whether it was ingested before."""

    path: str  # absolute, resolved
    size: int
    modified_ns: int

    @classmethod
    def stat(cls, path: Path) -> InputFile:
        """Fingerprint a file as it is now."""
        st = path.stat()
        return cls(str(path.resolve()), st.st_size, st.st_mtime_ns)

    @classmethod
    def readable(cls, path: Path) -> InputFile:
        """Fingerprint a file the reader can take, or say why it cannot.

        Only regular files are read: a FIFO without a writer would block for ever and a
        device such as /dev/zero never ends, so both are refused before anything opens them.
        """
        try:
            st = path.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InputError(f"{path} is a loop of symbolic links; point it at a file") from exc
            raise InputError(f"{path} cannot be read: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise InputError(
                f"{path} is {_kind(st.st_mode)}, not a regular file; only files can be "
                "inputs (write the data to a file first)"
            )
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise InputError(
                f"{path} cannot be opened: {exc.strerror}; check its permissions "
                "(the run needs to read it)"
            ) from exc
        return cls(str(path.resolve()), st.st_size, st.st_mtime_ns)

    @classmethod
    def stat_path(cls, path: str) -> InputFile:
        """Fingerprint a file given by its path."""
        return cls.stat(Path(path))


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
        stat.S_ISDIR: "a folder",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def is_input(path: Path) -> bool:
    """Whether a file found inside a folder is an input (by its name)."""
    return is_input_name(path.name)


def is_input_name(name: str) -> bool:
    """Whether a file or object name (the last part after `/` counts) names an input:
    `.json`, `.jsonl` or `.ndjson`, optionally `.gz`, and not hidden (`.` or `_` first)."""
    base = name.rsplit("/", 1)[-1]
    lowered = base.lower().removesuffix(".gz")
    return lowered.endswith(INPUT_SUFFIXES) and not base.startswith((".", "_"))


def _regular(path: Path) -> bool:
    # inside a folder only regular files are inputs; a FIFO or device there is passed over
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def resolve_inputs(patterns: list[str], store: InputStore | None = None) -> list[InputFile]:
    """Expand files, folders (recursively) and globs; sorted by path, which is receipt order.

    A URI (`az://container/stocks/`, `abfss://…/stocks/*.jsonl`) is listed through `store`
    (`sources.input_store`), with the same rules for folders and globs. A pattern that
    matches nothing is an error rather than an empty run: a typo in a path must not look
    like "nothing new to ingest".
    """
    found: dict[str, InputFile] = {}
    for pattern in patterns:
        if is_uri(pattern):
            objects = (store or InputStore()).matching(pattern)
            found.update((f.path, f) for f in objects)
            continue
        expanded = os.path.expanduser(pattern)
        # a path that exists is taken as it is: its name may hold `[`, `*` or `?`
        if os.path.lexists(expanded):
            matches = [Path(expanded)]
        else:
            matches = [Path(p) for p in glob.glob(expanded, recursive=True)]
        if not matches:
            raise InputError(f"no file or folder matches {pattern!r}")
        for match in matches:
            candidates = (
                sorted(p for p in match.rglob("*") if _regular(p)) if match.is_dir() else [match]
            )
            for candidate in candidates:
                if match.is_dir() and not is_input(candidate):
                    continue  # inside folders take only JSON inputs; a named file is taken as is
                info = InputFile.readable(candidate)
                found[info.path] = info
        if not found:
            raise InputError(
                f"{pattern!r} holds no .json, .jsonl or .ndjson files (optionally .gz)"
            )
    return sorted(found.values())
