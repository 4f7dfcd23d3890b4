"""The kernel's file scan (`scan_file` on a local file) finds what the Python scan finds:
the hashes, the line count before a resume point, the line end there, and the file's form."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from digital_finance import native
from digital_finance.sources import file_scan
from digital_finance.sources.file_scan import FileChangedError, scan_in_python

KERNEL = native.kernel()
pytestmark = pytest.mark.skipif(
    KERNEL is None or not hasattr(KERNEL, "scan_file"), reason="the native kernel is not built"
)

BIG = b"".join(b'{"stock_id": %d, "symbol": "AB"}\n' % i for i in range(60_000))  # > 1 MiB
FILES = {
    "plain.jsonl": b'{"a": 1}\n{"a": 2}\n{"a": 3}',
    "bom.jsonl": b'\xef\xbb\xbf \n{"a": 1}\r\n',
    "array.json": b'\n  [{"a": 1},\n {"a": 2}]\n',
    "gzip.jsonl.gz": gzip.compress(b'{"a": 1}\n'),
    "blank.jsonl": b" \n\r\n\t",
    "empty.jsonl": b"",
    "one-byte.jsonl": b"[",
    "big.jsonl": BIG,
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_kernel_scans_a_file_as_python_does(tmp_path: Path, name: str) -> None:
    data = FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    size = len(data)
    points = {None, 0, 1, size // 2, size - 1, size, size + 5, len(BIG) // 3, (1 << 20) + 7}
    for at in sorted(points, key=lambda p: -1 if p is None else p):
        if at is not None and at < 0:
            continue
        native_scan = file_scan.scan_file(str(path), size, at)
        assert native_scan == scan_in_python(str(path), size, at), (name, at)
    # a scan of fewer bytes than the file holds: the file as it was listed
    if size > 3:
        assert file_scan.scan_file(str(path), size - 3) == scan_in_python(str(path), size - 3)


def test_a_file_shorter_than_listed_changed_while_read(tmp_path: Path) -> None:
    path = tmp_path / "short.jsonl"
    path.write_bytes(b'{"a": 1}\n')
    with pytest.raises(FileChangedError, match="ends at byte 9, not 20"):
        file_scan.scan_file(str(path), 20)
    with pytest.raises(FileNotFoundError):
        file_scan.scan_file(str(tmp_path / "gone.jsonl"), 20)


def test_an_error_of_the_kernel_s_scan_is_python_s_own(tmp_path: Path) -> None:
    # the kernel's errors carry no errno or file name: the Python pass raises its own
    with pytest.raises(IsADirectoryError) as raised:
        file_scan.scan_file(str(tmp_path), 10)
    assert raised.value.filename == str(tmp_path)
