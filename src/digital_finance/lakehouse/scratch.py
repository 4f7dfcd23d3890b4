"""Scratch folders of a lakehouse's writers, and the clean-up of those a dead writer left.

Every piece of work that needs local scratch space (a batch's DuckDB spill, gold's rebuild,
uploads to an object store, an export) takes a folder under `Location.scratch` and holds a
shared `flock` on the folder's `.in-use` file for as long as it works. The kernel drops the
lock when the process dies, however it dies, so a folder whose lock can be taken
exclusively belongs to nobody alive: the next run removes it. A live writer's folder is
never touched, whichever engine or command it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from digital_finance.lakehouse.storage import Location

IN_USE = ".in-use"
# a folder without its lock file may be one a writer made a moment ago and is about to lock
_UNMARKED_GRACE_SECONDS = 600


@contextlib.contextmanager
def scratch_folder(root: Location, name: str) -> Iterator[Path]:
    """A scratch folder marked in use while the block runs, removed after it."""
    path = root.scratch(name)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / IN_USE, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


@dataclass(frozen=True)
class Leftovers:
    """What a clean-up removed."""

    folders: int
    bytes: int


def remove_leftovers(root: Location) -> Leftovers:
    """Remove the scratch folders of writers that are no longer alive."""
    base = root.scratch("x").parent
    if not base.is_dir():
        return Leftovers(0, 0)
    folders = size = 0
    for entry in sorted(base.iterdir()):
        if not entry.is_dir() or not _abandoned(entry):
            continue
        size += _size(entry)
        shutil.rmtree(entry, ignore_errors=True)
        folders += 1
    return Leftovers(folders, size)


def _abandoned(folder: Path) -> bool:
    marker = folder / IN_USE
    try:
        fd = os.open(marker, os.O_RDWR)
    except FileNotFoundError:
        try:
            return time.time() - folder.stat().st_mtime > _UNMARKED_GRACE_SECONDS
        except FileNotFoundError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live process holds it
    finally:
        os.close(fd)  # closing drops the lock we may have taken
    return True


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
