"""The commit lock: a waiting writer says who it waits for, and a killed holder frees it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from digital_finance.lakehouse.commit_lock import (
    FileCommitLock,
    ObjectStoreLock,
    commit_lock,
)

HOLD = """
import sys, time
from digital_finance.lakehouse.commit_lock import FileCommitLock
with FileCommitLock(__import__("pathlib").Path(sys.argv[1])).hold("holder-run", lambda m: None):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(root: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_waiting_writer_names_the_holder_and_gets_the_lock_when_it_is_killed(
    tmp_path: Path,
) -> None:
    proc = _holder(tmp_path)
    messages: list[str] = []

    def waiting(message: str) -> None:
        messages.append(message)
        if len(messages) == 1:
            proc.send_signal(signal.SIGKILL)  # the holder dies without letting go

    started = time.monotonic()
    with FileCommitLock(tmp_path).hold("waiter-run", waiting):
        pass
    proc.wait()
    assert time.monotonic() - started < 10
    assert len(messages) == 1
    assert f"pid {proc.pid}" in messages[0] and "holder-run" in messages[0]


def test_the_lock_is_taken_at_once_when_free_and_again_after_release(tmp_path: Path) -> None:
    lock = FileCommitLock(tmp_path)
    messages: list[str] = []
    with lock.hold("a", messages.append):
        pass
    with lock.hold("b", messages.append):
        assert "b" in (tmp_path / "_system/commit.lock").read_text()
    assert messages == []


def test_uri_roots_take_the_lease_and_folders_the_file_lock(tmp_path: Path) -> None:
    uri = "abfss://c@acct.dfs.core.windows.net/lake"
    assert isinstance(commit_lock(uri), ObjectStoreLock)
    assert isinstance(commit_lock(tmp_path), FileCommitLock)
    assert isinstance(commit_lock(f"file://{tmp_path}"), FileCommitLock)
