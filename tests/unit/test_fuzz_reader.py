"""Fuzzing the reader and the contract on random bytes: no crash, no hang, no record lost.

Each example is a file of random bytes, broken JSON, good records, blank lines, CRLF, bad
UTF-8 and lines over a (small) record limit. The reader must give exactly the lines a
trivial model of the format gives — every non-empty line once, with its number, its text,
and the reader's verdict — on the kernel and the pure-Python path alike, at any block size.
Then every non-blank line must get exactly one verdict from the kernel and from the
reference, and the two must agree wherever the kernel decides alone. The deadline catches a
hang: no example may take seconds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digital_finance import native
from digital_finance.contract.arrow_records import check_lines
from digital_finance.contract.schemas import INVALID_UTF8, RECORD_TOO_LARGE, STOCKS
from digital_finance.sources.file_reader import read_chunks
from digital_finance.sources.input_limits import InputLimits
from digital_finance.sources.line_chunk import prefix_text

LIMIT = 160
GOOD = (
    b'{"stock_id": 1, "company_id": 2, "symbol": "AB", "price": "1.5", '
    b'"timestamp": "2024-03-15T14:30:00Z"}'
)
pieces = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([
        GOOD, GOOD[:-1], GOOD + b",", b"{}", b"[]", b"[", b"{", b"\xef\xbb\xbf", b"\r", b"\n",
        b"\r\n", b"  ", b"\t", b"\xff\xfe", b"\xc3", b'"', b"\\", b"NaN", b"[" * 600,
        "é雪💹".encode() * 20, b"\xe9\x9b" * 90,
        b'{"a": ' + b"[" * 520 + b"]" * 520 + b"}", b"x" * (LIMIT + 1), b" " * (LIMIT + 5),
        b'{"stock_id": 1, "stock_id": 2}',
    ]),
)  # fmt: skip
files = st.lists(pieces, max_size=30).map(lambda parts: GOOD + b"\n" + b"".join(parts))


def _model(data: bytes) -> list[tuple[int, str, str | None]]:
    """The lines of an NDJSON file, by the contract's rules, written the simplest way."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            continue
        if len(line) > LIMIT:  # the kernel's cut and the Python one must be the same
            out.append((number, prefix_text(line), RECORD_TOO_LARGE))
            continue
        try:
            out.append((number, line.decode("utf-8"), None))
        except UnicodeDecodeError:
            out.append((number, line.decode("utf-8", "backslashreplace"), INVALID_UTF8))
    return out


def _read(path: Path, block: int) -> list[tuple[int, str | None, str | None]]:
    got = []
    for chunk in read_chunks(str(path), block, limits=InputLimits(max_record_bytes=LIMIT)):
        t = chunk.table
        for n, raw, reason in zip(t.column("line_number").to_pylist(),
                                  t.column("raw").to_pylist(),
                                  t.column("line_reason").to_pylist(), strict=True):  # fmt: skip
            got.append((n, raw, reason))
    return got


@pytest.mark.parametrize("kernel", ["1", "0"])
@settings(max_examples=150, deadline=3000, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=files, block=st.integers(min_value=8, max_value=4096))
def test_the_reader_gives_every_line_of_random_bytes_once(
    monkeypatch: pytest.MonkeyPatch, kernel: str, data: bytes, block: int
) -> None:
    monkeypatch.setenv(native.ENV_SWITCH, kernel)
    native.kernel.cache_clear()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fuzz.jsonl"
            path.write_bytes(data)
            assert _read(path, block) == _model(data)
    finally:
        native.kernel.cache_clear()


@pytest.mark.skipif(native.kernel() is None, reason="compares the kernel with the reference")
@settings(max_examples=150, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(data=files)
def test_every_line_gets_one_verdict_and_kernel_and_reference_agree(data: bytes) -> None:
    import pyarrow as pa

    from digital_finance.contract.native_check import NativeContract

    module = native.kernel()
    assert module is not None
    contract = NativeContract(module, STOCKS, "UTC", threads=1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fuzz.jsonl"
            path.write_bytes(data)
            limits = InputLimits(max_record_bytes=LIMIT)
            chunks = [c.table for c in read_chunks(str(path), 64, limits=limits)]
        lines = pa.concat_tables(chunks)
        blank = {n for n, raw, reason in zip(lines.column("line_number").to_pylist(),
                 lines.column("raw").to_pylist(), lines.column("line_reason").to_pylist(),
                 strict=True) if reason is None and not raw.strip(" \t\r\n")}  # fmt: skip
        wanted = [n for n in lines.column("line_number").to_pylist() if n not in blank]

        decided = contract.decide(lines)
        kept = decided.filter(decided.column("keep"))
        assert kept.column("line_number").to_pylist() == wanted  # none lost, none doubled
        judged = check_lines(lines, 0, STOCKS, "UTC")
        assert judged.column("line_number").to_pylist() == wanted
        by_reference = dict(zip(judged.column("line_number").to_pylist(),
                                judged.column("reasons").to_pylist(), strict=True))  # fmt: skip
        for n, reasons, unsure in zip(kept.column("line_number").to_pylist(),
                                      kept.column("reasons").to_pylist(),
                                      kept.column("needs_reference").to_pylist(), strict=True):  # fmt: skip
            if not unsure:
                assert reasons == by_reference[n], n
    finally:
        contract.close()
