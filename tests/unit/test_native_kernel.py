"""The native kernel (`native/kernel`) must decide exactly like the pure-Python reference.

The same trap pools as the SQL contract's test, plus traps aimed at a hand-written scanner:
escaped keys, escapes and control characters in `_rescued`, deep nesting, odd white space,
non-ASCII text, invalid UTF-8. Lines go through the real reader, the real kernel and the real
DuckDB staging table; `_rescued` must equal the reference's text exactly. The line splitter is
compared byte for byte with the numpy splitter it replaces.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digital_finance import native
from digital_finance.contract import reference
from digital_finance.contract.native_check import NativeContract
from digital_finance.contract.schemas import FUNDS, STOCKS, DatasetSpec, FieldKind
from digital_finance.engines.embedded.databases import connect
from digital_finance.engines.embedded.staging import StagedDataset
from digital_finance.runs.plan import PlannedFile
from digital_finance.sources import file_reader, json_arrays
from digital_finance.sources.discovery import InputFile
from tests.unit.test_engine_matches_reference import EXTRA, GARBAGE, POOLS, ZONES

KERNEL = native.kernel()
needs_kernel = pytest.mark.skipif(KERNEL is None, reason=native.INSTALL_HINT)

# traps for a scanner written by hand, on top of the shared pools
SCANNER_TRAPS = [
    '"\\u0041\\u00e9\\ud83d\\ude00"', '"tab\\there"', '"q\\"uote"', '"back\\\\slash"',
    '"\\/"', '"日本取引所"', '"\\u0000"', '"\\ud83d"', '"\\udc00"', '"\\x41"', "1.0e+2",
    "-0.0", "0.5E-2", "01", "1.", ".5", "+1", "1e", "[]", "{}", '{"a": {"b": [1, {"c": null}]}}',
    "9999999999999999", '"9999999999999999"', "9223372036854776", "-9223372036854775808",
    "1" * 4301,  # more digits than Python converts to int
]  # fmt: skip
SCANNER_EXTRA = [
    '"\\u006eote": "escaped key"', '"nested": {"deep": [[[[1]]]], "s": "a\\nb"}',
    '"ctrl": "\\u001f\\b\\f\\t\\r"', '"uni": "Zürich \\u2028"', '"big": 123456789012345678901234567890',
    '"exp": 1.5E+300', '"arr" : [ 1 , 2 ]', '"t": true', '"f": false', '"n": null',
]  # fmt: skip
SCANNER_GARBAGE = [
    "{" * 70 + "}" * 70,  # deeper than the kernel follows: the reference decides
    '{"a": ' + "[" * 80 + "]" * 80 + "}",
    '{"stock_id": 1, "stock_id": 1}', '{"\\u0073tock_id": 1, "stock_id": 2}',
    "\f", "\v{}", "{}\f", '{"a":1}//', '{"a":1} x', "[1,]", "{,}", '{"a" 1}', "nul", "tru",
    '"\\ud800"', '{"k": "\t"}', "1 2", "[" * 5, '{"a":"b"', "\u00a0{}",
    # a lone surrogate is invalid only where it survives the duplicate that may replace it
    '{"a": "\\ud800", "a": 1}', '{"x": {"k": "\\ud800", "k": 1}}', '["\\ud800"]',
    '{"a": "\\ud800\\u0041"}', '{"a": "\\udc00\\ud800"}', '{"\\ud800": 1, "\\ud800": 2}',
    # many keys: the duplicate check changes its data structure past 16 keys
    "{" + ", ".join(f'"k{i}": {i}' for i in range(40)) + ', "k3": 0}',
    "{" + ", ".join(f'"k{i}": {i}' for i in range(40)) + "}",
]  # fmt: skip


def _pool(kind: FieldKind) -> list[str]:
    return POOLS[kind] + SCANNER_TRAPS


@st.composite
def nasty_lines(draw: st.DrawFn, spec: DatasetSpec) -> str:
    if draw(st.integers(0, 20)) == 0:
        return draw(st.sampled_from(GARBAGE + SCANNER_GARBAGE))
    parts = []
    for f in spec.fields:
        if draw(st.integers(0, 9)) == 0:
            continue
        parts.append(f"{json.dumps(f.name)}: {draw(st.sampled_from(_pool(f.kind)))}")
    parts += draw(st.lists(st.sampled_from(EXTRA + SCANNER_EXTRA), max_size=3, unique=True))
    if draw(st.integers(0, 25)) == 0 and parts:
        parts.append(parts[0])
    parts = draw(st.permutations(parts))
    sep = draw(st.sampled_from([", ", ",", " ,\t", " , "]))
    pad = draw(st.sampled_from(["", " ", "\t", "  \r"]))
    return pad + "{" + sep.join(parts) + "}" + pad.replace("\r", "")


def _staged(spec: DatasetSpec, path: Path, tz: str, tmp: Path) -> dict[int, dict[str, object]]:
    assert KERNEL is not None
    con = connect(tmp / "spill", "256MB", 1)
    contract = NativeContract(KERNEL, spec, tz, threads=2)
    try:
        staged = StagedDataset(con, spec, tz, (), contract)
        staged.load_files([PlannedFile("t", 0, InputFile.stat(path))], lambda _f: None)
        staged.resolve_with_reference()
        cur = con.execute(f"SELECT * FROM {staged.parsed}")
        names = [d[0] for d in cur.description]
        return {
            r[names.index("line_number")]: dict(zip(names, r, strict=True)) for r in cur.fetchall()
        }
    finally:
        contract.close()
        con.close()


def _compare(spec: DatasetSpec, raws: list[str], tz: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.jsonl"
        # a first line that is an object: a file that is one JSON array is read as its
        # elements (docs/CONTRACT_RULES.md), which is not what these lines are about
        path.write_text("{}\n" + "\n".join(raws) + "\n", encoding="utf-8")
        rows = _staged(spec, path, tz, Path(tmp))
    for line, raw in enumerate(raws, start=2):
        if not raw.strip(" \t\r\n"):
            assert line not in rows
            continue
        got = rows[line]
        want = reference.check_record(raw, spec, tz)
        context = f"line {raw!r} (tz {tz})"
        assert got["raw"] == raw, context
        if isinstance(want, reference.Rejected):
            assert list(got["reasons"]) == list(want.reasons), context
            continue
        assert list(got["reasons"]) == [], context
        for f in spec.fields:
            expected = want.values[f.silver_name]
            if f.kind is FieldKind.EVENT_TIME and expected is not None:
                expected = expected.astimezone(UTC).replace(tzinfo=None)  # type: ignore[attr-defined]
            assert got[f.silver_name] == expected, f"{f.silver_name} of {context}"
            if f.kind is FieldKind.DECIMAL:
                assert isinstance(got[f.silver_name], Decimal)
        assert got["_rescued"] == want.rescued, context  # the same text, not just equal JSON


def test_kernel_is_installed_where_the_project_is_set_up() -> None:
    """`make setup` builds the kernel; a run without it must be asked for, not an accident."""
    if native.switched_off():
        pytest.skip("the kernel was switched off for this run")
    if shutil.which("cargo") is None:
        pytest.skip("no Rust toolchain here: `make setup` leaves the kernel out and says so")
    assert KERNEL is not None, native.INSTALL_HINT


@needs_kernel
@pytest.mark.parametrize("spec", [STOCKS, FUNDS], ids=lambda s: s.name)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), tz=st.sampled_from(ZONES))
def test_kernel_matches_reference(spec: DatasetSpec, data: st.DataObject, tz: str) -> None:
    raws = data.draw(st.lists(nasty_lines(spec), min_size=1, max_size=60))
    _compare(spec, raws, tz)


@needs_kernel
@pytest.mark.parametrize("tz", ZONES)
def test_every_trap_value_in_every_zone(tz: str) -> None:
    """Each pool value in each field, so no trap depends on Hypothesis picking it."""
    base = {
        "stock_id": "1", "company_id": "2", "symbol": '"AAPL"', "price": "10.5",
        "timestamp": '"2024-03-15T14:30:00Z"', "fund_id": '"F1"', "holding_weight": "1.5",
        "nav": "12.25", "as_of": '"2024-03-15T00:00:00Z"',
    }  # fmt: skip
    for spec in (STOCKS, FUNDS):
        raws = []
        for f in spec.fields:
            for value in _pool(f.kind):
                fields = {g.name: base.get(g.name, '"x"') for g in spec.fields}
                fields[f.name] = value
                raws.append("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}")
        for extra in EXTRA + SCANNER_EXTRA:
            fields = {g.name: base.get(g.name, '"x"') for g in spec.fields}
            body = ", ".join(f'"{k}": {v}' for k, v in fields.items())
            raws.append("{" + body + ", " + extra + "}")
        raws += GARBAGE + SCANNER_GARBAGE + ["", "   ", "\t"]
        _compare(spec, raws, tz)


@needs_kernel
def test_naive_times_at_the_calendar_edges_go_to_the_reference() -> None:
    """Only the reference can tell whether a zone's offset pushes year 1 or 9999 out of range."""
    raws = [
        f'{{"stock_id": 1, "company_id": 2, "symbol": "A", "price": 1, "timestamp": "{ts}"}}'
        for ts in ("0001-01-01 00:30:00", "9999-12-31 23:30:00", "0000-12-31 23:00:00")
    ]
    for tz in ("Asia/Kolkata", "America/New_York"):
        _compare(STOCKS, raws, tz)


def _read(path: Path, use_kernel: bool, block_bytes: int = 4096) -> pa.Table:
    previous = os.environ.get(native.ENV_SWITCH)
    os.environ[native.ENV_SWITCH] = "1" if use_kernel else "0"
    native.kernel.cache_clear()
    try:
        tables = [c.table for c in file_reader.read_chunks(str(path), block_bytes=block_bytes)]
    finally:
        if previous is None:
            del os.environ[native.ENV_SWITCH]
        else:
            os.environ[native.ENV_SWITCH] = previous
        native.kernel.cache_clear()
    return pa.concat_tables(tables).combine_chunks() if tables else pa.table({})


def _lines() -> st.SearchStrategy[bytes]:
    pieces = st.sampled_from(
        [b"{", b"}", b'"a":1', b"\r", b"\n", b"\r\n", b" ", b"\xff", b"\xe2\x82", b"\xe2\x82\xac",
         b"\xc3", b"\xa9", b"\xf0\x9f\x98\x80", b"\xf0\x9f", b"\xed\xa0\x80", b"\x00", b"x", b"\xef\xbb\xbf"]
    )  # fmt: skip
    lines = st.lists(st.one_of(pieces, st.binary(max_size=6)), max_size=80).map(b"".join)
    return lines.filter(lambda b: not b.startswith(b"\x1f\x8b"))  # not gzip


@needs_kernel
@settings(max_examples=150, deadline=None)
@given(body=_lines(), block=st.sampled_from([1, 3, 16, 4096]))
def test_native_splitter_matches_numpy(body: bytes, block: int) -> None:
    """Line ends, CRLF, invalid UTF-8 and its backslash escapes: byte for byte the same,
    also when lines are longer than the read buffer or end exactly at its edge."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lines.jsonl"
        path.write_bytes(body)
        assert _read(path, True, block).equals(_read(path, False, block))


@needs_kernel
def test_splitter_escapes_like_python() -> None:
    bad = b"caf\xc3\xa9 \xff \xe2\x82 \xed\xa0\x80 \xf0\x9f\x98"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bad.jsonl"
        path.write_bytes(b'{"a": 1}\r\n' + bad + b"\n")
        table = _read(path, True)
    assert table.column("raw").to_pylist() == [
        '{"a": 1}',
        bad.decode("utf-8", errors="backslashreplace"),
    ]
    assert table.column("line_reason").to_pylist() == [None, "invalid_utf8"]


def _chunks(rows: int) -> Iterator[str]:
    for i in range(1, rows + 1):
        yield (
            f'{{"stock_id": {i}, "company_id": {i % 7 + 1}, "symbol": "S{i % 97}", '
            f'"price": "{i}.{i % 1000:03d}", "timestamp": {1_700_000_000 + i}}}'
        )


@needs_kernel
def test_slices_keep_receipt_order_across_a_large_chunk() -> None:
    """More lines than one slice: rows come back in line order with their own values."""
    raws = list(_chunks(40_000))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "many.jsonl"
        path.write_text("\n".join(raws) + "\n", encoding="utf-8")
        rows = _staged(STOCKS, path, "UTC", Path(tmp))
    assert len(rows) == len(raws)
    for line in (1, 16_384, 16_385, 32_768, 40_000):
        assert rows[line]["stock_id"] == line
        assert rows[line]["price"] == Decimal(f"{line}.{line % 1000:03d}")


@st.composite
def array_files(draw: st.DrawFn) -> bytes:
    elements = draw(
        st.lists(
            st.one_of(nasty_lines(STOCKS), st.sampled_from(["NaN", "[1, {}]", '"s"', "1e5"])),
            max_size=8,
        )
    )
    gaps = st.sampled_from(["", " ", "\n", "\r\n", "\n\n  ", "\t"])
    body = "[" + draw(gaps)
    for k, e in enumerate(elements):
        body += ("," + draw(gaps) if k else "") + e + draw(gaps)
    body += "]" + draw(st.sampled_from(["", "\n", " x", ",", "]"]))
    prefix = draw(st.sampled_from(["", "\ufeff", "\n\n", " "]))
    return (prefix + body).encode("utf-8")


@needs_kernel
@settings(max_examples=200, deadline=None)
@given(data=array_files())
def test_native_array_files_match_python(data: bytes) -> None:
    """Where the kernel unrolls an array file it gives Python's elements and lines exactly;
    where it declines (NaN, broken text) Python's reader decides as before."""
    native_chunk = json_arrays.native_array_chunk(data)
    python_chunk = json_arrays.array_chunk(data)
    if native_chunk is not None:
        assert python_chunk is not None
        assert native_chunk.table.equals(python_chunk.table)


@needs_kernel
def test_native_array_file_takes_plain_arrays() -> None:
    data = b'\xef\xbb\xbf[\n {"a": 1},\r\n {"b": [2, 3]}\n]\n'
    chunk = json_arrays.native_array_chunk(data)
    assert chunk is not None
    assert chunk.table.equals(json_arrays.array_chunk(data).table)  # type: ignore[union-attr]
    assert chunk.table.column("line_number").to_pylist() == [2, 3]


def test_line_codes_read_from_buffers_match_the_reasons() -> None:
    """`line_codes` maps the reader's `line_reason` strings to the kernel's bytes without
    pyarrow.compute; a sliced array, nulls and an unknown reason included."""
    import numpy as np
    import pyarrow as pa

    from digital_finance.contract.native_check import line_codes
    from digital_finance.contract.schemas import INVALID_UTF8, RECORD_TOO_LARGE

    values = [None, INVALID_UTF8, RECORD_TOO_LARGE, "something_else", None, INVALID_UTF8]
    values += [RECORD_TOO_LARGE[:12], None]  # the same length as invalid_utf8, not it
    whole = pa.array(["x", *values], pa.string())
    expected = {None: 1, INVALID_UTF8: 0, RECORD_TOO_LARGE: 2}
    codes = line_codes(whole.slice(1))
    assert codes is not None
    assert codes.tolist() == [expected.get(v, 1) for v in values]
    assert codes.dtype == np.uint8
    assert line_codes(pa.nulls(3, pa.string())) is None
