"""Files hashed ahead of the plan (`runs.intake.FileIntake.hash_ahead`): each scan is made
once, the plan waits for a scan under way, and a scan that failed ahead is made again
where the plan takes the file (and fails there, with the plan's own error)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from digital_finance.runs.intake import FileIntake, _Memoized
from digital_finance.sources.discovery import InputFile
from digital_finance.sources.file_scan import FileScan, scan_file


def test_a_file_hashed_ahead_is_not_hashed_again(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int | None]] = []
    release = threading.Event()

    def scan(path: str, size: int, at: int | None) -> FileScan:
        release.wait(5)  # still under way when the plan asks
        calls.append((path, size, at))
        return scan_file(path, size, at)

    files = []
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(b'{"x": 1}\n' * 3)
        files.append(InputFile(str(tmp_path / name), 27, 0))
    memo = _Memoized(scan)
    memo.ahead([(f.path, f.size, None) for f in files])
    release.set()
    memo.prefetch([(f.path, f.size, None) for f in files[1:]])
    scans = [memo(f.path, f.size, None) for f in files]
    assert sorted(calls) == sorted((f.path, f.size, None) for f in files)  # once each
    assert scans == [scan_file(f.path, f.size, None) for f in files]


def test_a_scan_that_failed_ahead_is_made_again_and_fails_there(tmp_path: Path) -> None:
    attempts: list[str] = []

    def scan(path: str, size: int, at: int | None) -> FileScan:
        attempts.append(path)
        raise FileNotFoundError(path)

    memo = _Memoized(scan)
    memo.ahead([("gone", 5, None)]).shutdown(wait=True)
    with pytest.raises(FileNotFoundError):
        memo("gone", 5, None)
    assert attempts == ["gone", "gone"]


def test_an_intake_hashes_every_listed_file_ahead(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_bytes(b'{"x": 1}\n')
    listed = {"stocks": [InputFile(str(tmp_path / "s.json"), 9, 0)], "mutual_funds": []}
    intake = FileIntake(listed)
    intake.hash_ahead()
    assert intake.scan(str(tmp_path / "s.json"), 9, None) == scan_file(
        str(tmp_path / "s.json"), 9, None
    )
