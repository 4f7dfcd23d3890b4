"""The file reader: exact line numbers and text across blocks, line ends, BOM, gzip, arrays."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from digital_finance.contract.schemas import RECORD_TOO_LARGE
from digital_finance.sources.file_reader import read_chunks
from digital_finance.sources.input_limits import FileRefusedError, InputLimits


def _read(path: Path, block: int = 1 << 20) -> list[tuple[int, str, bool]]:
    out = []
    for chunk in read_chunks(str(path), block_bytes=block):
        t = chunk.table
        out += list(
            zip(
                t.column("line_number").to_pylist(),
                t.column("raw").to_pylist(),
                [r is None for r in t.column("line_reason").to_pylist()],
                strict=True,
            )
        )
    return out


LINES = ['{"a": 1}', "", "  ", '{"b": "é ü ß"}', "not json", '{"c": [1, 2]}', "x" * 300]


@pytest.mark.parametrize("block", [7, 64, 1000, 1 << 20])
@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("final_newline", [True, False])
def test_lines_and_numbers_survive_any_block_size(
    tmp_path: Path, block: int, ending: str, final_newline: bool
) -> None:
    text = ending.join(LINES) + (ending if final_newline else "")
    path = tmp_path / "f.jsonl"
    path.write_bytes(("\ufeff" + text).encode("utf-8"))
    got = _read(path, block)
    # empty lines are dropped by the reader; every other line keeps its number
    expected = [(n, raw) for n, raw in enumerate(LINES, start=1) if raw]
    assert [(n, raw) for n, raw, _ in got] == expected
    assert all(ok for _, _, ok in got)


def test_gzip_is_recognised_by_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "no-suffix.jsonl"
    path.write_bytes(gzip.compress(b'{"a": 1}\n{"a": 2}\n'))
    assert [raw for _, raw, _ in _read(path)] == ['{"a": 1}', '{"a": 2}']


def test_invalid_utf8_marks_only_that_line(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a": "\xc3\xa9"}\n{"a": "\xff\xfe"}\n{"a": 3}\n')
    got = _read(path, block=5)
    assert [(n, ok) for n, _, ok in got] == [(1, True), (2, False), (3, True)]
    assert got[0][1] == '{"a": "é"}'
    assert got[1][1] == '{"a": "\\xff\\xfe"}'  # the bad bytes, escaped
    assert got[2][1] == '{"a": 3}'


def test_json_array_file_keeps_element_text_and_start_line(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_text('[\n  {"a": 1.50},\n\n  {"b":\n    2},\n  [3], "x"\n]\n', encoding="utf-8")
    got = _read(path)
    assert [(n, raw) for n, raw, _ in got] == [
        (2, '{"a": 1.50}'),
        (4, '{"b":\n    2}'),
        (6, "[3]"),
        (6, '"x"'),
    ]


def test_broken_array_file_is_read_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_text('[\n{"a": 1},\n{"b": 2\n', encoding="utf-8")
    assert [raw for _, raw, _ in _read(path)] == ["[", '{"a": 1},', '{"b": 2']


def test_empty_file_has_no_records(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"")
    assert _read(path) == []


@pytest.mark.parametrize("kernel", ["1", "0"])
def test_array_files_python_cannot_follow_never_fail_the_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: str
) -> None:
    """A 4,301-digit integer (beyond Python's int conversion) stays text; nesting deeper than
    Python's decoder follows makes the file NDJSON. Neither raises."""
    from digital_finance import native

    monkeypatch.setenv(native.ENV_SWITCH, kernel)
    native.kernel.cache_clear()
    try:
        big = tmp_path / "big.json"
        big.write_text('[{"fund_id": ' + "7" * 4301 + "}]", encoding="utf-8")
        assert [raw for _, raw, _ in _read(big)] == ['{"fund_id": ' + "7" * 4301 + "}"]
        deep = tmp_path / "deep.json"
        deep.write_text("[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
        assert [n for n, _, _ in _read(deep)] == [1]  # one line, read as NDJSON
    finally:
        monkeypatch.delenv(native.ENV_SWITCH)
        native.kernel.cache_clear()


def _read_part(
    path: Path, start: int, end: int, first_line: int, block: int
) -> list[tuple[int, str, bool]]:
    out = []
    for chunk in read_chunks(str(path), block, start=start, end=end, first_line=first_line):
        t = chunk.table
        out += list(zip(t.column("line_number").to_pylist(), t.column("raw").to_pylist(),
                        [r is None for r in t.column("line_reason").to_pylist()], strict=True))  # fmt: skip
    return out


@pytest.mark.parametrize("kernel", ["1", "0"])
@pytest.mark.parametrize("block", [5, 64, 1 << 20])
def test_a_file_read_in_parts_gives_the_records_of_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: str, block: int
) -> None:
    """Lines appended after a read are read from the byte where it ended, numbered on."""
    from digital_finance import native

    monkeypatch.setenv(native.ENV_SWITCH, kernel)
    native.kernel.cache_clear()
    try:
        body = "\r\n".join(LINES).encode() + b"\n" + b'{"bad": "\xff"}\n\n{"z": 1}\n'
        path = tmp_path / "f.jsonl"
        path.write_bytes(b"\xef\xbb\xbf" + body + b"trailing-bytes-not-yet-listed")
        size = 3 + len(body)
        whole = _read_part(path, 0, size, 1, block)
        lines = body.split(b"\n")[:-1]
        assert [n for n, _, _ in whole] == [
            n for n, line in enumerate(lines, start=1) if line.rstrip(b"\r")
        ]
        data = path.read_bytes()[:size]
        cuts = [i + 1 for i, byte in enumerate(data) if byte == ord("\n")]
        for cut in cuts:
            head = _read_part(path, 0, cut, 1, block)
            tail = _read_part(path, cut, size, data[:cut].count(b"\n") + 1, block)
            assert head + tail == whole, cut
    finally:
        monkeypatch.delenv(native.ENV_SWITCH)
        native.kernel.cache_clear()


def test_a_read_stops_at_the_listed_size(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"half": ')
    got = _read_part(path, 0, len('{"a": 1}\n'), 1, 1 << 20)
    assert [raw for _, raw, _ in got] == ['{"a": 1}']


# --- limits: a record over the limit, bombs, arrays (sources/input_limits.py) -------------


def _limited(
    path: Path, limits: InputLimits, block: int = 1 << 20
) -> list[tuple[int, str, str | None]]:
    out = []
    for chunk in read_chunks(str(path), block_bytes=block, limits=limits):
        t = chunk.table
        out += list(zip(t.column("line_number").to_pylist(), t.column("raw").to_pylist(),
                        t.column("line_reason").to_pylist(), strict=True))  # fmt: skip
    return out


@pytest.mark.parametrize("kernel", ["1", "0"])
@pytest.mark.parametrize("block", [16, 100, 1 << 20])
@pytest.mark.parametrize("final_newline", [True, False])
def test_a_record_over_the_limit_keeps_its_first_bytes_and_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: str, block: int, final_newline: bool
) -> None:
    from digital_finance import native
    from digital_finance.sources.input_limits import PREFIX_BYTES

    monkeypatch.setenv(native.ENV_SWITCH, kernel)
    native.kernel.cache_clear()
    try:
        limit = 64
        exact = '{"a": "' + "x" * (limit - 9) + '"}'
        assert len(exact) == limit
        huge = '{"big": "' + "é" * 6000 + '"}'  # far past the limit, multi-byte text
        lines = ['{"a": 1}', exact, exact + " ", "", huge, '{"z": 2}', " " * 200, huge]
        text = "\r\n".join(lines) + ("\n" if final_newline else "")
        path = tmp_path / "f.jsonl"
        path.write_text(text, encoding="utf-8")
        got = _limited(path, InputLimits(max_record_bytes=limit), block)
        assert [(n, reason) for n, _, reason in got] == [
            (1, None),
            (2, None),  # exactly the limit is taken
            (3, RECORD_TOO_LARGE),
            (5, RECORD_TOO_LARGE),
            (6, None),
            (7, RECORD_TOO_LARGE),  # even blanks: what is past the limit is never looked at
            (8, RECORD_TOO_LARGE),
        ]
        assert got[1][1] == exact and got[4][1] == '{"z": 2}'
        kept = got[3][1].encode()
        assert huge.encode().startswith(kept) and len(kept) <= PREFIX_BYTES
        assert len(kept) >= PREFIX_BYTES - 3  # cut back only to end on a whole character
    finally:
        monkeypatch.delenv(native.ENV_SWITCH)
        native.kernel.cache_clear()


def test_a_line_longer_than_the_limit_is_never_held_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tracemalloc

    from digital_finance.sources import file_reader

    path = tmp_path / "long.jsonl"
    with path.open("wb") as f:
        f.write(b'{"a": 1}\n{"x": "')
        f.write(b"y" * (64 << 20))
        f.write(b'"}\n{"a": 2}\n')
    asked: list[int] = []  # read buffers are mappings, which tracemalloc does not see
    take = file_reader._BUFFERS.take
    monkeypatch.setattr(file_reader._BUFFERS, "take", lambda n: asked.append(n) or take(n))
    tracemalloc.start()
    got = _limited(path, InputLimits(max_record_bytes=1 << 20), block=1 << 20)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [(n, r) for n, _, r in got] == [(1, None), (2, RECORD_TOO_LARGE), (3, None)]
    assert peak < 16 << 20, peak  # a few blocks, not the 64 MiB line
    assert asked and max(asked) <= 4 << 20, asked


def test_an_appended_part_applies_the_limit_too(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    first = b'{"a": 1}\n'
    path.write_bytes(first + b'{"b": "' + b"z" * 500 + b'"}\n{"c": 3}\n')
    chunks = read_chunks(str(path), 64, start=len(first), first_line=2,
                         limits=InputLimits(max_record_bytes=100))  # fmt: skip
    got = [(n, r) for c in chunks for n, r in zip(c.table.column("line_number").to_pylist(),
           c.table.column("line_reason").to_pylist(), strict=True)]  # fmt: skip
    assert got == [(2, RECORD_TOO_LARGE), (3, None)]


def test_a_gzip_bomb_is_refused_before_it_fills_memory(tmp_path: Path) -> None:
    import tracemalloc

    member = gzip.compress(bytes(1 << 20), compresslevel=9)  # 1 MiB of zeros, ~1 KB
    path = tmp_path / "bomb.json.gz"
    path.write_bytes(member * 1024)  # inflates to 1 GiB
    tracemalloc.start()
    with pytest.raises(FileRefusedError, match="decompression bomb"):
        list(read_chunks(str(path)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 128 << 20, peak


def test_gzip_within_the_ratio_is_read_and_the_total_is_capped(tmp_path: Path) -> None:
    import random

    rng = random.Random(3)
    lines = [f'{{"a": {rng.random()}, "b": "{rng.random()}"}}' for _ in range(400_000)]
    path = tmp_path / "ok.json.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert sum(c.num_rows for c in read_chunks(str(path))) == len(lines)
    capped = InputLimits(max_inflated_bytes=1 << 20)
    with pytest.raises(FileRefusedError, match=r"inflates to more than 1\.0 MiB"):
        list(read_chunks(str(path), limits=capped))


def test_a_json_array_over_its_limit_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "array.json"
    path.write_text("[" + ",".join(f'{{"a": {i}}}' for i in range(1000)) + "]")
    assert sum(c.num_rows for c in read_chunks(str(path))) == 1000
    with pytest.raises(FileRefusedError, match="jq -c"):
        list(read_chunks(str(path), limits=InputLimits(max_array_bytes=1000)))


def test_an_array_element_over_the_record_limit_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "array.json"
    path.write_text('[{"a": 1},\n {"b": "' + "q" * 300 + '"},\n {"c": 3}]')
    got = _limited(path, InputLimits(max_record_bytes=100))
    assert [(n, r) for n, _, r in got] == [(1, None), (2, RECORD_TOO_LARGE), (3, None)]


def test_leading_blanks_are_not_held_while_looking_for_an_array(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b"\n" * (8 << 20) + b'{"a": 1}\n')
    got = _limited(path, InputLimits())
    assert [(n, r) for n, _, r in got] == [((8 << 20) + 1, None)]


def test_a_long_line_skipped_with_small_buffers_leaves_room_for_what_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digital_finance.sources import file_reader

    monkeypatch.setattr(file_reader, "_BUFFERS", file_reader._Buffers())  # none pooled yet
    path = tmp_path / "long-then-many.jsonl"
    # a line longer than the first block read, then more than that block after it
    path.write_bytes(b"x" * 100_000 + b"\n" + b'{"a": 1}\n' * 20_000)
    got = _limited(path, InputLimits(max_record_bytes=160), block=64)
    assert len(got) == 20_001
    assert got[0][0] == 1 and got[0][2] == RECORD_TOO_LARGE
    assert all(r is None for _, _, r in got[1:])
