"""The file reader: exact line numbers and text across blocks, line ends, BOM, gzip, arrays."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from digital_finance.sources.file_reader import read_chunks


def _read(path: Path, block: int = 1 << 20) -> list[tuple[int, str, bool]]:
    out = []
    for chunk in read_chunks(str(path), block_bytes=block):
        t = chunk.table
        out += list(
            zip(
                t.column("line_number").to_pylist(),
                t.column("raw").to_pylist(),
                t.column("utf8_ok").to_pylist(),
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
    assert [(n, raw) for n, raw, _ in got] == list(enumerate(LINES, start=1))
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
                        t.column("utf8_ok").to_pylist(), strict=True))  # fmt: skip
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
        assert [n for n, _, _ in whole] == list(range(1, len(whole) + 1))
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
