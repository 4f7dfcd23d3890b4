"""A file read in pieces by separate readers gives the records of one read, numbered alike."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import pytest

from digital_finance.sources.file_pieces import Piece, pieces
from digital_finance.sources.file_reader import read_chunks

LINES = ['{"a": 1}', "", "  ", '{"b": "é ü ß"}', "not json", '{"c": [1, 2]}', "x" * 300]


def _records(path: Path, start: int, end: int, first_line: int) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for chunk in read_chunks(str(path), 64, start=start, end=end, first_line=first_line):
        t = chunk.table
        out += zip(t.column("line_number").to_pylist(), t.column("raw").to_pylist(), strict=True)
    return out


def _body(ending: str) -> bytes:
    lines = LINES * 5 + ['{"bad": "\udcff"}']
    return ending.join(lines).encode("utf-8", "surrogateescape") + ending.encode()


@pytest.mark.parametrize("target", [1, 20, 64, 333, 4096])
@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("tail", [b"", b'{"no": "newline at the end"}'])
def test_pieces_read_apart_give_the_records_of_one_read(
    tmp_path: Path, target: int, ending: str, tail: bytes
) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _body(ending) + tail)
    size = path.stat().st_size
    cut = pieces(str(path), 0, size, 1, target)
    apart = [r for p in cut for r in _records(path, p.start, p.end, p.first_line)]
    assert apart == _records(path, 0, size, 1)
    data = path.read_bytes()
    assert cut[0].start == 0 and cut[-1].end == size
    for before, after in itertools.pairwise(cut):
        assert before.end == after.start and data[after.start - 1 : after.start] == b"\n"
    if target < size // 4:
        assert len(cut) > 2  # the file was cut, not kept whole


def test_an_appended_part_is_cut_and_numbered_on(tmp_path: Path) -> None:
    first = b'{"a": 1}\n\n'
    path = tmp_path / "f.jsonl"
    path.write_bytes(first + _body("\n"))
    size = path.stat().st_size
    cut = pieces(str(path), len(first), size, 3, 50)
    assert len(cut) > 2 and cut[0] == Piece(len(first), cut[0].end, 3)
    apart = [r for p in cut for r in _records(path, p.start, p.end, p.first_line)]
    assert apart == _records(path, len(first), size, 3)


def test_gzip_and_array_files_and_small_parts_stay_whole(tmp_path: Path) -> None:
    zipped = tmp_path / "z.jsonl.gz"
    zipped.write_bytes(gzip.compress(_body("\n")))
    array = tmp_path / "a.json"
    array.write_bytes(b"  [" + b",\n".join(line.encode() for line in ['{"a": 1}'] * 50) + b"]\n")
    small = tmp_path / "s.jsonl"
    small.write_bytes(_body("\n"))
    for path in (zipped, array):
        size = path.stat().st_size
        assert pieces(str(path), 0, size, 1, 10) == [Piece(0, size, 1)]
    size = small.stat().st_size
    assert pieces(str(small), 0, size, 1, size) == [Piece(0, size, 1)]
