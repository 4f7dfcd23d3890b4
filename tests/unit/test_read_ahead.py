"""A file read ahead (`sources.read_ahead`) gives the batch's reader exactly what reading it
then would: the same chunks in the same order, the reader going on where the thread stopped,
an error at the same place; a part it was not read for is read as usual."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest

from digital_finance.runs.plan import PlannedFile
from digital_finance.sources import read_ahead
from digital_finance.sources.base import FileSource
from digital_finance.sources.discovery import InputFile
from digital_finance.sources.file_reader import read_chunks
from digital_finance.sources.input_limits import FileRefusedError, InputLimits
from digital_finance.sources.line_chunk import LineChunk

BLOCK = 4096  # small blocks: a file is many chunks
LIMITS = InputLimits()


@pytest.fixture(autouse=True)
def _nothing_left_ahead() -> Iterator[None]:
    yield
    read_ahead.discard()


def _file(tmp_path: Path, lines: int = 2_000) -> Path:
    path = tmp_path / "stocks.jsonl"
    body = b"".join(b'{"stock_id": %d, "symbol": "AB"}\n' % i for i in range(lines))
    path.write_bytes(body + b"\n\n  \n" + b"not json\n" + b'{"tail": 1}')  # blanks, no end
    return path


def _tables(chunks: Iterator[LineChunk]) -> list[object]:
    return [(c.table.to_pydict(), c.lines_covered) for c in chunks]


def _part(path: Path, start: int = 0, first_line: int = 1) -> PlannedFile:
    listed = InputFile.stat_path(str(path))
    return PlannedFile("stocks", 0, listed, start, first_line)


@pytest.mark.parametrize("budget", [2 * BLOCK, 1 << 30])  # stopped in the file, or not
def test_a_file_read_ahead_gives_the_chunks_a_read_then_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    monkeypatch.setattr(read_ahead, "_BUDGET", budget)
    path = _file(tmp_path, lines=20_000)
    size = path.stat().st_size
    expected = _tables(read_chunks(str(path), BLOCK, end=size, limits=LIMITS))
    assert len(expected) > 10

    read_ahead.start([(str(path), size)], BLOCK, LIMITS)
    source = FileSource(BLOCK, LIMITS)
    assert _tables(source.read(_part(path))) == expected
    # taken once: a second read of the part reads the file again, the same
    assert read_ahead.take(str(path), 0, size, 1, BLOCK, LIMITS) is None
    assert _tables(source.read(_part(path))) == expected


def test_a_part_it_was_not_read_for_is_read_as_usual(tmp_path: Path) -> None:
    path = _file(tmp_path)
    size = path.stat().st_size
    read_ahead.start([(str(path), size)], BLOCK, LIMITS)
    other = InputLimits(max_record_bytes=1024)
    assert read_ahead.take(str(path), 0, size, 1, BLOCK, other) is None  # other limits
    assert read_ahead.take(str(path), 0, size, 1, BLOCK * 2, LIMITS) is None  # other blocks
    assert read_ahead.take(str(path), 10, size, 3, BLOCK, LIMITS) is None  # a later part
    assert read_ahead.take(str(path), 0, size - 1, 1, BLOCK, LIMITS) is None  # fewer bytes
    assert read_ahead.take(str(path), 0, size, 1, BLOCK, LIMITS) is not None


def test_an_error_reading_ahead_is_raised_where_the_reader_meets_it(tmp_path: Path) -> None:
    path = tmp_path / "array.json"
    path.write_bytes(b"[" + b", ".join(b'{"a": %d}' % i for i in range(200)) + b"]")
    small = InputLimits(max_array_bytes=100)
    read_ahead.start([(str(path), path.stat().st_size)], BLOCK, small)
    chunks = read_ahead.take(str(path), 0, path.stat().st_size, 1, BLOCK, small)
    assert chunks is not None
    with pytest.raises(FileRefusedError, match="one JSON array"):
        list(chunks)


def test_a_reading_nobody_took_is_dropped(tmp_path: Path) -> None:
    path = _file(tmp_path)
    size = path.stat().st_size
    read_ahead.start([(str(path), size)], BLOCK, LIMITS)
    read_ahead.discard()
    assert read_ahead.take(str(path), 0, size, 1, BLOCK, LIMITS) is None


def test_files_are_read_ahead_in_order_until_the_budget_and_the_rest_as_usual(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_ahead, "_BUDGET", 3 * BLOCK)  # a few chunks of the first file
    paths = []
    for i in range(3):
        path = tmp_path / f"part-{i}.jsonl"
        path.write_bytes(b"".join(b'{"n": %d, "file": %d}\n' % (n, i) for n in range(10_000)))
        paths.append(path)
    listed = [(str(p), p.stat().st_size) for p in paths]
    expected = [_tables(read_chunks(p, BLOCK, end=n, limits=LIMITS)) for p, n in listed]
    read_ahead.start(listed, BLOCK, LIMITS)
    # the first file was read ahead (part of it: the budget), the others not at all
    first = read_ahead.take(listed[0][0], 0, listed[0][1], 1, BLOCK, LIMITS)
    assert first is not None and _tables(first) == expected[0]
    assert read_ahead.take(listed[1][0], 0, listed[1][1], 1, BLOCK, LIMITS) is None
    source = FileSource(BLOCK, LIMITS)
    assert [_tables(source.read(_part(p))) for p in paths] == expected


def test_the_read_ahead_passes_over_a_gzip_file(tmp_path: Path) -> None:
    plain, zipped, after = (tmp_path / n for n in ("a.jsonl", "b.jsonl.gz", "c.jsonl"))
    plain.write_bytes(b'{"n": 1}\n')
    zipped.write_bytes(gzip.compress(b'{"n": 2}\n'))
    after.write_bytes(b'{"n": 3}\n')
    listed = [(str(p), p.stat().st_size) for p in (plain, zipped, after)]
    read_ahead.start(listed, BLOCK, LIMITS)
    taken = [read_ahead.take(p, 0, n, 1, BLOCK, LIMITS) for p, n in listed]
    assert [t is not None for t in taken] == [True, False, True]


def test_a_json_array_larger_than_the_budget_is_left_to_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_ahead, "_BUDGET", 1000)
    small, large = tmp_path / "small.json", tmp_path / "large.json"
    small.write_bytes(b' [{"n": 1}]')
    large.write_bytes(b"\n[" + b", ".join(b'{"n": %d}' % i for i in range(500)) + b"]")
    listed = [(str(p), p.stat().st_size) for p in (small, large)]
    read_ahead.start(listed, BLOCK, LIMITS)
    taken = [read_ahead.take(p, 0, n, 1, BLOCK, LIMITS) for p, n in listed]
    assert [t is not None for t in taken] == [True, False]


def test_nothing_is_read_ahead_without_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_ahead.native, "kernel", lambda: None)
    path = _file(tmp_path)
    read_ahead.start([(str(path), path.stat().st_size)], BLOCK, LIMITS)
    assert read_ahead.take(str(path), 0, path.stat().st_size, 1, BLOCK, LIMITS) is None
