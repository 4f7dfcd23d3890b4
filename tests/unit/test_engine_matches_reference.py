"""The embedded engine's vectorised contract must decide exactly like the pure-Python reference.

Hypothesis builds lines full of traps (number forms, timestamp forms, odd types, unknown and
duplicate keys, broken JSON); each batch goes through the real DuckDB staging, and every line's
verdict and typed values are compared with `contract.reference.check_record`.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digital_finance.contract import reference
from digital_finance.contract.schemas import FUNDS, STOCKS, DatasetSpec, FieldKind
from digital_finance.engines.embedded.databases import connect
from digital_finance.engines.embedded.staging import StagedDataset
from digital_finance.runs.plan import PlannedFile
from digital_finance.sources.discovery import InputFile

INTEGERS = [
    "1", "7", "0", "-0", "-5", "9223372036854775807", "9223372036854775808", "12.0", "1e3",
    '"42"', '"007"', '" 42"', '"-1"', '"4.0"', '""', "true", "false", "null", '{"a":1}', "[1]",
    "123456789012345678901234567890",
]  # fmt: skip
DECIMALS = [
    "1", "0", "-0.0", "-3.5", "12.5", "999999999999.999999", "1000000000000", "0.000001",
    "0.0000001", "1.2500000000", "1.5e-3", "1E2", "2.5e+1", "1e-7", "1.23456789e5",
    "0.1000000000000000055511151231257827", '"12.50"', '" 7.25 "', '"1e2"', '"abc"', '""',
    '"-1"', "true", "null", "[]", "100", "100.000001", "99.999999", "1e999", "NaN",
    "0000012.5", '"0000012.5"', "5e-324", "123456.1234567e1",
]  # fmt: skip
TIMES = [
    '"2024-03-15T14:30:00Z"', '"2024-03-15T14:30:00.250+05:30"', '"2024-03-15 14:30:00"',
    '"2024-03-15T14:30:00.123456"', '"2024-03-15t14:30:00z"', '"2024-02-29T00:00:00Z"',
    '"2023-02-29T00:00:00Z"', '"2024-02-30 10:00:00"', '"2024-03-15T24:00:00Z"',
    '"2024-03-15T23:59:60Z"', '"2024-03-10 02:30:00"', '"2024-11-03 01:30:00"',
    '"2024-03-31 02:30:00"', '"2024-10-27 01:30:00"', "1710513000", "99999999999",
    "100000000000", "1710513000000", '"1710513000"', "1710513000.5", "-5", '"  2024-03-15T14:30:00-04:00 "',
    '"2024-03-15T14:30:00+24:00"', '"0001-01-01T00:00:00+01:00"', '"9999-12-31T23:59:59-01:00"',
    '"2024-03-15"', '"not a date"', "true", "{}", '"2024-03-15T14:30:00.1234567Z"',
    "253402300799999", "253402300800000", '"0000-01-01T00:00:00Z"',
]  # fmt: skip
STRINGS = [
    '"AAPL"', '" brk.b "', '"BRK-B"', '"TOOLONGSYMBOL"', '"ABCDEFGHIJKL"', '""', '"a b"',
    '"\\u00e9"', '"Börse Frankfurt"', '"usd"', '"EU"', '"eur "', "12", "-3", "true", "null",
    '"\\u0041APL"', '"tab\\tin"', '"\\ud800"', '"line\\nbreak"',
]  # fmt: skip
EXTRA = ['"note": "x"', '"meta": {"price": 1.5}', '"n": 1.25', '"tags": [1, "a"]']
GARBAGE = ["{", "[1, 2]", '"just a string"', "42", "not json", '{"a": 1,}', "{} {}", "\t"]

POOLS = {
    FieldKind.INTEGER: INTEGERS,
    FieldKind.DECIMAL: DECIMALS,
    FieldKind.EVENT_TIME: TIMES,
    FieldKind.SYMBOL: STRINGS,
    FieldKind.CURRENCY: STRINGS,
    FieldKind.IDENTIFIER: STRINGS + INTEGERS,
    FieldKind.TEXT: STRINGS,
}


@st.composite
def lines_for(draw: st.DrawFn, spec: DatasetSpec) -> str:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from(GARBAGE))
    parts = []
    for f in spec.fields:
        if draw(st.integers(0, 9)) == 0:
            continue  # absent
        parts.append(f"{json.dumps(f.name)}: {draw(st.sampled_from(POOLS[f.kind]))}")
    parts += draw(st.lists(st.sampled_from(EXTRA), max_size=2, unique=True))
    if draw(st.integers(0, 25)) == 0 and parts:
        parts.append(parts[0])  # duplicate key
    parts = draw(st.permutations(parts))
    sep = draw(st.sampled_from([", ", ",", " ,\t"]))
    return "{" + sep.join(parts) + "}"


def _engine(
    spec: DatasetSpec, raws: list[str], tz: str
) -> tuple[dict[int, dict[str, object]], int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.jsonl"
        path.write_text("\n".join(raws) + "\n", encoding="utf-8")
        con = connect(Path(tmp) / "spill", "256MB", 1)
        staged = StagedDataset(con, spec, tz, ())
        staged.load(PlannedFile("t", 0, InputFile.stat(path)))
        referred = staged.resolve_with_reference()
        cur = con.execute(f"SELECT * FROM {staged.parsed}")
        names = [d[0] for d in cur.description]
        rows = {
            r[names.index("line_number")]: dict(zip(names, r, strict=True)) for r in cur.fetchall()
        }
        con.close()
    return rows, referred


def _compare(spec: DatasetSpec, raws: list[str], tz: str) -> int:
    rows, referred = _engine(spec, raws, tz)
    for line, raw in enumerate(raws, start=1):
        if not raw.strip(" \t\r\n"):
            assert line not in rows
            continue
        got = rows[line]
        want = reference.check_record(raw, spec, tz)
        context = f"line {raw!r} (tz {tz})"
        if isinstance(want, reference.Rejected):
            assert list(got["reasons"]) == list(want.reasons), context
            continue
        assert list(got["reasons"]) == [], context
        for f in spec.fields:
            expected = want.values[f.silver_name]
            actual = got[f.silver_name]
            if f.kind is FieldKind.EVENT_TIME and expected is not None:
                expected = expected.astimezone(UTC).replace(tzinfo=None)  # type: ignore[attr-defined]
            assert actual == expected, f"{f.silver_name}: {actual!r} != {expected!r} for {context}"
            if f.kind is FieldKind.DECIMAL:
                assert isinstance(actual, Decimal)
        if want.rescued is None:
            assert got["_rescued"] is None, context
        else:
            assert json.loads(got["_rescued"], parse_float=Decimal) == json.loads(
                want.rescued, parse_float=Decimal
            ), context
    return referred


ZONES = ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe"]


@pytest.mark.parametrize("spec", [STOCKS, FUNDS], ids=lambda s: s.name)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), tz=st.sampled_from(ZONES))
def test_engine_matches_reference(spec: DatasetSpec, data: st.DataObject, tz: str) -> None:
    raws = data.draw(st.lists(lines_for(spec), min_size=1, max_size=60))
    _compare(spec, raws, tz)


def test_every_trap_value_once_per_zone() -> None:
    """Each pool value in each field, so no trap depends on Hypothesis picking it."""
    for spec in (STOCKS, FUNDS):
        base = {
            "stock_id": "1", "company_id": "2", "symbol": '"AAPL"', "price": "10.5",
            "timestamp": '"2024-03-15T14:30:00Z"', "fund_id": '"F1"', "holding_weight": "1.5",
            "nav": "12.25", "as_of": '"2024-03-15T00:00:00Z"',
        }  # fmt: skip
        raws = []
        for f in spec.fields:
            for value in POOLS[f.kind]:
                fields = {g.name: base.get(g.name, '"x"') for g in spec.fields}
                fields[f.name] = value
                raws.append("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}")
        raws += GARBAGE
        for tz in ZONES:
            _compare(spec, raws, tz)


def test_fast_path_carries_the_ordinary_rows() -> None:
    """The reference is a fallback, not the engine: ordinary rows must not need it."""
    raws = [
        f'{{"stock_id": {i}, "company_id": 3, "symbol": "AAPL", "price": 10.25, '
        '"timestamp": "2024-03-15T14:30:00Z"}'
        for i in range(1, 500)
    ]
    rows, referred = _engine(STOCKS, raws, "UTC")
    assert referred == 0
    assert len(rows) == len(raws)
    assert all(r["price"] == Decimal("10.25") for r in rows.values())


def test_duckdb_is_the_engine() -> None:
    assert duckdb.__version__
