"""One committer at a time per lakehouse; every writer stages its batch in parallel.

Why commits are serialised rather than merged after a conflict: every table records the last
batch it holds as one Delta app transaction, which is what lets a resumed batch skip the
tables it already wrote, and that only holds when batches reach each table in id order.
Silver's latest-wins MERGE and gold's join also read each other's results. Committing is the
short part of a batch (parsing and the contract are the long part, and they need no lock),
so a writer holds the lock from re-planning its batch to logging it, and no longer.

The lock is advisory `flock` on a file under `_system/`: the kernel drops it when its holder
dies, SIGKILL included, so a crashed writer never blocks the next one. A writer that has to
wait says so (who holds the lock, since when) and waits; it never fails a healthy run.
`flock` is reliable on local disks; on NFS and other network file systems it is not, and on
URIs (`abfss://`) there is no file to lock (see `commit_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

LOCK_FILE = "_system/commit.lock"
POLL_SECONDS = 0.02
REMIND_SECONDS = 30.0


class CommitLock(Protocol):
    """Mutual exclusion of the commit phase of every writer of one lakehouse."""

    def hold(
        self, run_id: str, waiting: Callable[[str], None]
    ) -> contextlib.AbstractContextManager[None]:
        """Hold the lock for the block; `waiting(message)` is called while another holds it."""


class FileCommitLock:
    """`flock` on `<root>/_system/commit.lock`, whose text names the current holder."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_FILE

    @contextlib.contextmanager
    def hold(self, run_id: str, waiting: Callable[[str], None]) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._acquire(fd, waiting)
            holder = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "run_id": run_id,
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _acquire(self, fd: int, waiting: Callable[[str], None]) -> None:
        started = time.monotonic()
        reminded = 0.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if reminded:
                    log.info("commit lock acquired after %.1f s", time.monotonic() - started)
                return
            except BlockingIOError:
                pass
            waited = time.monotonic() - started
            if not reminded or waited - reminded >= REMIND_SECONDS:
                message = f"waiting for another writer to finish committing ({self._holder()})"
                if reminded:
                    message += f"; waited {waited:.0f} s"
                log.info(message)
                waiting(message)
                reminded = max(waited, 1e-9)
            time.sleep(POLL_SECONDS)

    def _holder(self) -> str:
        try:
            holder = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return "holder unknown"
        if not holder:
            return "holder unknown"
        return (
            f"pid {holder.get('pid')} on {holder.get('host')}, run {holder.get('run_id')}, "
            f"since {holder.get('since')}"
        )


class UnsharedLock:
    """No cross-process lock: for a URI root, where a single writer is assumed and said."""

    def __init__(self, root: str) -> None:
        self.root = root

    @contextlib.contextmanager
    def hold(self, run_id: str, waiting: Callable[[str], None]) -> Iterator[None]:
        log.warning(
            "no commit lock on %s: run one writer at a time on this lakehouse "
            "(concurrent writers are serialised on local folders only)",
            self.root,
        )
        yield


def commit_lock(root: str | Path) -> CommitLock:
    """The commit lock for a lakehouse root: a file lock on a local folder."""
    text = str(root)
    if "://" in text and not text.startswith("file://"):
        return UnsharedLock(text)
    return FileCommitLock(Path(text.removeprefix("file://")))
