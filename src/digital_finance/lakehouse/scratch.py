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
import uuid
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
    while True:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / IN_USE, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)
        # a clean-up may have taken the folder between the open and the lock: then the
        # marker locked is no longer the folder's, and the folder is made again
        try:
            if os.fstat(fd).st_ino == os.stat(path / IN_USE).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
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
        if not entry.is_dir() or entry.name.startswith(".removing-"):
            continue
        gone = _take(entry)
        if gone is None:
            continue
        size += _size(gone)
        shutil.rmtree(gone, ignore_errors=True)
        folders += 1
    for stale in base.glob(".removing-*"):  # a clean-up that was itself cut short
        shutil.rmtree(stale, ignore_errors=True)
    return Leftovers(folders, size)


def _take(folder: Path) -> Path | None:
    """Move a dead writer's folder out of the way (None when its owner is alive).

    The move happens while the folder's lock is held exclusively, so a writer that opens
    the old marker afterwards finds it moved and makes its folder again.
    """
    marker = folder / IN_USE
    try:
        fd = os.open(marker, os.O_RDWR)
    except FileNotFoundError:
        try:
            old = time.time() - folder.stat().st_mtime > _UNMARKED_GRACE_SECONDS
        except FileNotFoundError:
            return None
        return _moved(folder) if old else None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None  # a live process holds it
    try:
        return _moved(folder)
    finally:
        os.close(fd)


def _moved(folder: Path) -> Path | None:
    target = folder.with_name(f".removing-{uuid.uuid4().hex}")
    try:
        folder.rename(target)
    except FileNotFoundError:
        return None
    return target


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
