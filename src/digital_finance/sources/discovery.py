"""Turn the user's PATH arguments (files, folders, globs) into an ordered list of input files."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from digital_finance.errors import TerminalError

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
    def stat_path(cls, path: str) -> InputFile:
        """Fingerprint a file given by its path."""
        return cls.stat(Path(path))


def _is_input(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(INPUT_SUFFIXES) and not path.name.startswith((".", "_"))


def resolve_inputs(patterns: list[str]) -> list[InputFile]:
    """Expand files, folders (recursively) and globs; sorted by path, which is receipt order.

    A pattern that matches nothing is an error rather than an empty run: a typo in a path
    must not look like "nothing new to ingest".
    """
    found: dict[str, InputFile] = {}
    for pattern in patterns:
        matches = [Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True)]
        if not matches:
            raise InputError(f"no file or folder matches {pattern!r}")
        for match in matches:
            candidates = (
                sorted(p for p in match.rglob("*") if p.is_file()) if match.is_dir() else [match]
            )
            for candidate in candidates:
                if match.is_dir() and not _is_input(candidate):
                    continue  # inside folders take only JSON inputs; a named file is taken as is
                info = InputFile.stat(candidate)
                found[info.path] = info
        if not found:
            raise InputError(
                f"{pattern!r} holds no .json, .jsonl or .ndjson files (optionally .gz)"
            )
    return sorted(found.values())
