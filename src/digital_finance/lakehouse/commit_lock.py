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
`flock` is reliable on local disks; on NFS and other network file systems it is not.

On object stores (`abfss://`, `az://`) the lock is a lease made of conditional writes
(`ObjectStoreLock`): the lock object is created only if absent (If-None-Match), renewed by
its holder every few seconds (If-Match on its own version), and taken over, again by a
conditional write, by a waiter that saw it unrenewed for `LEASE_SECONDS` of its own clock,
so clock skew between machines does not matter. A holder paused longer than that may lose
the lease while it commits; the batch claim (see `runs.batch_runner`) still refuses a second
batch under its id.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from digital_finance.errors import TerminalError, TransientError
from digital_finance.lakehouse.storage import Location, location, refused_by_store

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
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder_text(run_id), 0)
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
            return _describe(self.path.read_bytes())
        except OSError:
            return "holder unknown"


LEASE_SECONDS = 30.0  # DIGITAL_FINANCE_COMMIT_LEASE_SECONDS overrides (tests use a short one)
RENEW_SECONDS = 5.0
STORE_POLL_SECONDS = 0.25


class LeaseUnreachableError(TerminalError):
    """The commit lease cannot be written: the store refused or could not be reached."""

    @classmethod
    def of(cls, root: Location, cause: Exception) -> LeaseUnreachableError:
        """The error for `root`, naming the store's refusal and what to set."""
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        return cls(
            f"the commit lease on {root.uri} cannot be written ({first}); the writers of a "
            "lakehouse in a container take turns through it, so this process needs write "
            "access there: give [storage] options or the AZURE_STORAGE_* / AZURE_CLIENT_* "
            "variables (on Spark, for the identity its Hadoop configuration uses; "
            "docs/STORAGE.md)"
        )


class ObjectStoreLock:
    """A lease on `<root>/_system/commit.lock` in an object store, by conditional writes."""

    def __init__(self, root: Location) -> None:
        self.root = root
        self.key = LOCK_FILE
        self.lease = float(os.environ.get("DIGITAL_FINANCE_COMMIT_LEASE_SECONDS", LEASE_SECONDS))
        self.renew_every = min(RENEW_SECONDS, self.lease / 3)

    @contextlib.contextmanager
    def hold(self, run_id: str, waiting: Callable[[str], None]) -> Iterator[None]:
        import obstore

        store = self.root.store()
        version = self._acquire(store, run_id, waiting)
        stop = threading.Event()
        lost = threading.Event()

        def renew() -> None:
            nonlocal version
            while not stop.wait(self.renew_every):
                try:
                    put = obstore.put(store, self.key, _holder_text(run_id), mode=version)
                    version = _version(put)
                except Exception as exc:  # the lease is gone; the batch claim still guards
                    log.error("lost the commit lease on %s: %s", self.root, exc)
                    lost.set()
                    return

        renewer = threading.Thread(target=renew, name="commit-lease", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            if not lost.is_set():
                with contextlib.suppress(Exception):
                    obstore.delete(store, self.key)

    def _acquire(self, store: Any, run_id: str, waiting: Callable[[str], None]) -> Any:
        import obstore
        from obstore.exceptions import (
            AlreadyExistsError,
            BaseError,
            NotFoundError,
            PreconditionError,
        )

        started = time.monotonic()
        reminded = 0.0
        seen: tuple[str | None, float] | None = None  # the holder's version, when first seen
        while True:
            try:
                put = obstore.put(store, self.key, _holder_text(run_id), mode="create")
                return _version(put)
            except AlreadyExistsError:
                pass
            except (BaseError, ValueError, FileNotFoundError) as exc:
                if refused_by_store(exc):  # credentials, a missing container, a bad option
                    raise LeaseUnreachableError.of(self.root, exc) from exc
                # a timeout, a server error: the same run may pass later
                raise TransientError(f"the commit lease on {self.root.uri}: {exc}") from exc
            try:
                meta = obstore.head(store, self.key)
            except (NotFoundError, FileNotFoundError):  # obstore raises the built-in one
                continue  # let go of between the two calls: try again at once
            now = time.monotonic()
            if seen is None or seen[0] != meta["e_tag"]:
                seen = (meta["e_tag"], now)
            elif now - seen[1] > self.lease:
                try:
                    put = obstore.put(store, self.key, _holder_text(run_id), mode=_version(meta))
                except PreconditionError:
                    seen = None  # another waiter took it over first
                    continue
                log.warning("took over the commit lease on %s: its holder stopped renewing it",
                            self.root)  # fmt: skip
                return _version(put)
            waited = now - started
            if not reminded or waited - reminded >= REMIND_SECONDS:
                try:
                    holder = _describe(bytes(obstore.get(store, self.key).bytes()))
                except (NotFoundError, FileNotFoundError):
                    continue  # let go of meanwhile: try to take it at once
                message = f"waiting for another writer to finish committing ({holder})"
                log.info(message)
                waiting(message)
                reminded = max(waited, 1e-9)
            time.sleep(STORE_POLL_SECONDS)


def _version(result: Any) -> Any:
    """The conditional-write mode that matches this version of the object (If-Match)."""
    return {k: result[k] for k in ("e_tag", "version") if result.get(k) is not None}


def _holder_text(run_id: str) -> bytes:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "run_id": run_id,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return json.dumps(holder).encode()


def _describe(text: bytes) -> str:
    try:
        holder = json.loads(text or b"{}")
    except ValueError:
        return "holder unknown"
    if not holder:
        return "holder unknown"
    return (
        f"pid {holder.get('pid')} on {holder.get('host')}, run {holder.get('run_id')}, "
        f"since {holder.get('since')}"
    )


def commit_lock(root: str | Path | Location) -> CommitLock:
    """The commit lock for a lakehouse root: a file lock on a folder, a lease on a store.

    Both engines take the same lock. On a store the lease is written with the root's storage
    options (or the standard variables), so a Spark job needs them as well as its Hadoop
    credentials; `LeaseUnreachableError` says so when they are missing.
    """
    where = location(root)
    if where.is_local:
        return FileCommitLock(where.path)
    return ObjectStoreLock(where)
