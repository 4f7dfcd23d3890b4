"""Every rule of CONTRACT.md and docs/CONTRACT_RULES.md, case by case, on the reference.

Records are written as raw JSON text on purpose: `12` and `12.0`, `"12"` and `12` are
different inputs under the contract, and only text can say which one a test means.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from digital_finance.contract.reference import (
    Accepted,
    JsonNumber,
    JsonValue,
    Rejected,
    check_record,
    parse_decimal,
    parse_event_time,
    parse_integer,
)
from digital_finance.contract.schemas import (
    FUNDS,
    STOCKS,
    DatasetSpec,
    FieldKind,
    FieldSpec,
)

# Each base record holds one valid JSON text per field; tests override single fields.
STOCK_BASE: dict[str, str] = {
    "stock_id": "1",
    "company_id": "10",
    "symbol": '"AAPL"',
    "price": "189.5",
    "timestamp": '"2024-03-15T14:30:00Z"',
}
FUND_BASE: dict[str, str] = {
    "fund_id": '"F-001"',
    "company_id": "10",
    "holding_weight": "2.5",
    "nav": "10.25",
    "as_of": '"2024-03-15T00:00:00Z"',
}
BASES = {"stocks": STOCK_BASE, "mutual_funds": FUND_BASE}
SPECS = {"stocks": STOCKS, "mutual_funds": FUNDS}
ABSENT = None  # as an override: leave the field out of the record


def record(base: dict[str, str], **fields: str | None) -> str:
    """Raw record text: `base` with `fields` replaced or added (JSON text each; None drops)."""
    merged = {**base, **fields}
    members = (f"{json.dumps(key)}: {text}" for key, text in merged.items() if text is not None)
    return "{" + ", ".join(members) + "}"


def accept(raw: str, spec: DatasetSpec, source_tz: str = "UTC") -> Accepted:
    result = check_record(raw, spec, source_tz)
    assert isinstance(result, Accepted), f"{raw} -> {result}"
    return result


def reject(raw: str, spec: DatasetSpec) -> Rejected:
    result = check_record(raw, spec)
    assert isinstance(result, Rejected), f"{raw} -> {result}"
    return result


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


# ------------------------------------------------------------------------------------------
# Whole records


def test_valid_stock_record_is_typed_completely() -> None:
    raw = record(
        STOCK_BASE,
        volume="1500",
        exchange='"NASDAQ"',
        currency='"usd"',
        timestamp='"2024-03-15T20:00:00.250+05:30"',
    )
    result = accept(raw, STOCKS)
    assert result.values == {
        "stock_id": 1,
        "company_id": 10,
        "symbol": "AAPL",
        "price": Decimal("189.5"),
        "volume": 1500,
        "exchange": "NASDAQ",
        "currency": "USD",
        "event_time": utc(2024, 3, 15, 14, 30, 0, 250000),
    }
    assert result.rescued is None
    # Types, not only values: Decimal(189.5) == 189.5 would hide a float.
    assert type(result.values["stock_id"]) is int
    assert type(result.values["volume"]) is int
    price = result.values["price"]
    assert isinstance(price, Decimal)
    assert price.as_tuple().exponent == -6
    assert str(price) == "189.500000"
    event_time = result.values["event_time"]
    assert isinstance(event_time, datetime)
    assert event_time.tzinfo is UTC


def test_minimal_stock_record_fills_optional_fields() -> None:
    result = accept(record(STOCK_BASE), STOCKS)
    assert result.values["volume"] is None
    assert result.values["exchange"] is None
    assert result.values["currency"] == "USD"
    assert list(result.values) == [
        "stock_id",
        "company_id",
        "symbol",
        "price",
        "volume",
        "exchange",
        "currency",
        "event_time",
    ]


def test_valid_fund_record_is_typed_completely() -> None:
    raw = record(FUND_BASE, fund_name='"Global Growth"', holding_weight='"12.345678"')
    result = accept(raw, FUNDS)
    assert result.values == {
        "fund_id": "F-001",
        "fund_name": "Global Growth",
        "company_id": 10,
        "holding_weight": Decimal("12.345678"),
        "nav": Decimal("10.25"),
        "as_of": utc(2024, 3, 15),
    }
    nav = result.values["nav"]
    assert isinstance(nav, Decimal)
    assert str(nav) == "10.250000"
    assert result.rescued is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param("not json", "invalid_json", id="text"),
        pytest.param("", "invalid_json", id="empty"),
        pytest.param('{"stock_id": 1,}', "invalid_json", id="trailing-comma"),
        pytest.param("{'stock_id': 1}", "invalid_json", id="single-quotes"),
        pytest.param('{"a": 1} // note', "invalid_json", id="comment"),
        pytest.param('{"a": 1}{"b": 2}', "invalid_json", id="two-values"),
        pytest.param('{"a": NaN}', "invalid_json", id="nan"),
        pytest.param('{"a": Infinity}', "invalid_json", id="infinity"),
        pytest.param('{"a": -Infinity}', "invalid_json", id="minus-infinity"),
        pytest.param('{"a": 01}', "invalid_json", id="leading-zero-number"),
        pytest.param('{"a": .5}', "invalid_json", id="bare-fraction"),
        pytest.param('{"a": +1}', "invalid_json", id="plus-sign"),
        pytest.param('{"a": "x\x01"}', "invalid_json", id="raw-control-char"),
        pytest.param('\ufeff{"a": 1}', "invalid_json", id="bom-inside-record"),
        pytest.param('{"a": "\\ud800"}', "invalid_json", id="lone-surrogate-escape"),
        pytest.param('{"\\udc00": 1}', "invalid_json", id="lone-surrogate-key"),
        pytest.param('{"a": 1', "invalid_json", id="unterminated"),
        pytest.param('{"a": \u0661}', "invalid_json", id="arabic-digit-number"),
        pytest.param("[1, NaN]", "invalid_json", id="nan-beats-not-an-object"),
        pytest.param('{"a": 1, "a": 2,}', "invalid_json", id="invalid-beats-duplicate"),
        pytest.param('[{"a": 1, "a": 2}', "invalid_json", id="unterminated-with-duplicate"),
        pytest.param("[]", "not_an_object", id="empty-array"),
        pytest.param('[{"stock_id": 1}]', "not_an_object", id="array-of-object"),
        pytest.param('"text"', "not_an_object", id="string"),
        pytest.param("42", "not_an_object", id="integer"),
        pytest.param("1.5", "not_an_object", id="number"),
        pytest.param("true", "not_an_object", id="boolean"),
        pytest.param("null", "not_an_object", id="null"),
        pytest.param('[{"a": 1, "a": 2}]', "not_an_object", id="not-an-object-beats-duplicate"),
        pytest.param('{"a": 1, "a": 1}', "duplicate_key", id="same-value-twice"),
        pytest.param(
            record(STOCK_BASE, stock_id="1")[:-1] + ', "stock_id": 2}',
            "duplicate_key",
            id="contract-field-twice",
        ),
        pytest.param('{"x": {"k": 1, "k": 2}}', "duplicate_key", id="nested-duplicate"),
        pytest.param('{"x": [{"k": 1, "k": 2}]}', "duplicate_key", id="duplicate-in-array"),
    ],
)
def test_whole_record_reasons(raw: str, reason: str) -> None:
    for spec in (STOCKS, FUNDS):
        result = reject(raw, spec)
        # A whole-record reason stands alone: no field reasons are added to it.
        assert result.reasons == (reason,)
        assert result.reason == reason


def test_deeply_nested_record_is_quarantined_not_raised() -> None:
    deep = '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert reject(deep, STOCKS).reasons == ("nesting_too_deep",)


def test_nesting_up_to_the_limit_is_parsed_and_deeper_is_refused() -> None:
    from digital_finance.contract.schemas import MAX_NESTING_DEPTH

    base = '"stock_id": 1, "company_id": 2, "symbol": "A", "price": 1, "timestamp": 0'
    # the record itself is one level; brackets inside strings do not count
    ok = "{" + base + ', "x": ' + "[" * (MAX_NESTING_DEPTH - 1) + "]" * (MAX_NESTING_DEPTH - 1)
    ok += ', "s": "' + "[" * 600 + '"}'
    assert isinstance(check_record(ok, STOCKS), Accepted)
    deep = "{" + base + ', "x": ' + "[" * MAX_NESTING_DEPTH + "]" * MAX_NESTING_DEPTH + "}"
    assert reject(deep, STOCKS).reasons == ("nesting_too_deep",)
    broken = "[" * 1000  # not JSON, and deeper than the limit: depth is decided first
    assert reject(broken, STOCKS).reasons == ("nesting_too_deep",)


def test_white_space_around_a_record_is_json_white_space() -> None:
    assert accept(" \t" + record(STOCK_BASE) + "\r\n ", STOCKS).values["stock_id"] == 1


def test_escaped_surrogate_pair_is_one_character() -> None:
    result = accept(record(STOCK_BASE, exchange='"\\ud83d\\ude00"'), STOCKS)
    assert result.values["exchange"] == "\U0001f600"


def test_every_broken_rule_is_listed_in_contract_field_order() -> None:
    raw = record(
        STOCK_BASE,
        stock_id="true",
        symbol=ABSENT,
        price='"-1"',
        currency='"dollars"',
        timestamp='"2023-02-29T00:00:00Z"',
    )
    result = reject(raw, STOCKS)
    assert result.reasons == (
        "invalid_stock_id",
        "missing_symbol",
        "invalid_price",
        "invalid_currency",
        "invalid_timestamp",
    )
    assert result.reason == "invalid_stock_id"


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        (
            "stocks",
            (
                "missing_stock_id",
                "missing_company_id",
                "missing_symbol",
                "missing_price",
                "missing_timestamp",
            ),
        ),
        (
            "mutual_funds",
            (
                "missing_fund_id",
                "missing_company_id",
                "missing_holding_weight",
                "missing_nav",
                "missing_as_of",
            ),
        ),
    ],
)
def test_empty_object_misses_every_required_field(dataset: str, expected: tuple[str, ...]) -> None:
    assert reject("{}", SPECS[dataset]).reasons == expected


def test_rejected_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="at least one reason"):
        Rejected(())


def test_unknown_source_time_zone_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus_Mons"):
        check_record(record(STOCK_BASE), STOCKS, "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_event_time("2024-03-15 12:00:00", "Not/A_Zone")


# ------------------------------------------------------------------------------------------
# One field at a time: accepted forms and their stored value


def _value_cases(dataset: str, field: str, cases: list[tuple[str | None, object]]) -> list[object]:
    return [
        pytest.param(dataset, field, text, value, id=f"{field}={text}") for text, value in cases
    ]


INT64_MAX = 2**63 - 1

ACCEPTED = [
    *_value_cases(
        "stocks",
        "stock_id",
        [
            ("1", 1),
            ('"42"', 42),
            ('"007"', 7),
            (str(INT64_MAX), INT64_MAX),
            (f'"{INT64_MAX}"', INT64_MAX),
            (f'"000{INT64_MAX}"', INT64_MAX),
        ],
    ),
    *_value_cases("stocks", "company_id", [("10", 10), ('"0000010"', 10)]),
    *_value_cases("mutual_funds", "company_id", [("7", 7), ('"7"', 7)]),
    *_value_cases(
        "stocks",
        "volume",
        [
            ("0", 0),
            ('"0"', 0),
            ("-0", 0),
            ("1500", 1500),
            (str(INT64_MAX), INT64_MAX),
            (ABSENT, None),
            ("null", None),
        ],
    ),
    *_value_cases(
        "stocks",
        "symbol",
        [
            ('"AAPL"', "AAPL"),
            ('"aapl"', "AAPL"),
            ('"  brk.b  "', "BRK.B"),
            ('"\\tbf-b\\n"', "BF-B"),
            ('"\\f\\u000bmsft\\r"', "MSFT"),
            ('"A"', "A"),
            ('"ABCDEFGHIJKL"', "ABCDEFGHIJKL"),
            ('" abcdefghijkl "', "ABCDEFGHIJKL"),
            ('"7203.T"', "7203.T"),
            ('"123"', "123"),
        ],
    ),
    *_value_cases(
        "stocks",
        "price",
        [
            ("189.5", Decimal("189.5")),
            ('"189.5"', Decimal("189.5")),
            ('" 189.5 "', Decimal("189.5")),
            ('"\\t\\n1.25\\r"', Decimal("1.25")),
            ("100", Decimal(100)),
            ('"100"', Decimal(100)),
            ("999999999999.999999", Decimal("999999999999.999999")),
            ('"999999999999.999999"', Decimal("999999999999.999999")),
            ("0.000001", Decimal("0.000001")),
            ("1.2500000", Decimal("1.25")),
            ("1.000000000000000000000000000000", Decimal(1)),
            ("1.5e-3", Decimal("0.0015")),
            ("1.5E-3", Decimal("0.0015")),
            ("15e2", Decimal(1500)),
            ("1.5E+3", Decimal(1500)),
            ("1e-6", Decimal("0.000001")),
            ("1e11", Decimal("100000000000")),
            ("123456789012345678e-6", Decimal("123456789012.345678")),
            ("0.000000000123456789012345678e21", Decimal("123456789012.345678")),
            ("1000000000000e-6", Decimal(1000000)),
            ('"0001.5"', Decimal("1.5")),
            ('"1.5e-3"', Decimal("0.0015")),
        ],
    ),
    *_value_cases(
        "stocks",
        "exchange",
        [
            ('"NASDAQ"', "NASDAQ"),
            ('" nyse "', " nyse "),
            ('"東京証券取引所"', "東京証券取引所"),
            ('""', ""),
            (ABSENT, None),
            ("null", None),
        ],
    ),
    *_value_cases(
        "stocks",
        "currency",
        [
            ('"USD"', "USD"),
            ('"eur"', "EUR"),
            ('" GbP\\t"', "GBP"),
            (ABSENT, "USD"),
            ("null", "USD"),
        ],
    ),
    *_value_cases(
        "mutual_funds",
        "fund_id",
        [
            ('"F-001"', "F-001"),
            ('"  F-001 \\n"', "F-001"),
            ('"0012"', "0012"),
            ('"Fonds Européen"', "Fonds Européen"),
            ("12", "12"),
            ("-12", "-12"),
            ("0", "0"),
            ("123456789012345678901234567890", "123456789012345678901234567890"),
        ],
    ),
    *_value_cases(
        "mutual_funds",
        "fund_name",
        [('"Global Growth"', "Global Growth"), ('" x "', " x "), (ABSENT, None), ("null", None)],
    ),
    *_value_cases(
        "mutual_funds",
        "holding_weight",
        [
            ("100", Decimal(100)),
            ("100.000000", Decimal(100)),
            ("1e2", Decimal(100)),
            ("0.000001", Decimal("0.000001")),
            ('"55.5"', Decimal("55.5")),
            ("99.999999", Decimal("99.999999")),
        ],
    ),
    *_value_cases(
        "mutual_funds",
        "nav",
        [
            ("999999999999.999999", Decimal("999999999999.999999")),
            ('" 10.25 "', Decimal("10.25")),
            ("2.50e1", Decimal(25)),
        ],
    ),
    *_value_cases(
        "stocks",
        "timestamp",
        [
            ('"2024-03-15T14:30:00Z"', utc(2024, 3, 15, 14, 30)),
            ("1710513000", utc(2024, 3, 15, 14, 30)),
            ("1710513000000", utc(2024, 3, 15, 14, 30)),
            ('"1710513000"', utc(2024, 3, 15, 14, 30)),
        ],
    ),
    *_value_cases(
        "mutual_funds",
        "as_of",
        [
            ('"2024-03-15 00:00:00"', utc(2024, 3, 15)),
            ("1710460800", utc(2024, 3, 15)),
        ],
    ),
]


@pytest.mark.parametrize(("dataset", "field", "text", "expected"), ACCEPTED)
def test_accepted_field_value(dataset: str, field: str, text: str | None, expected: object) -> None:
    spec = SPECS[dataset]
    result = accept(record(BASES[dataset], **{field: text}), spec)
    stored = result.values[spec.field(field).silver_name]
    assert stored == expected
    assert type(stored) is type(expected)
    if isinstance(stored, Decimal):
        # Quantized to the field's scale, so that every engine stores the same digits.
        assert stored.as_tuple().exponent == -spec.field(field).scale


# ------------------------------------------------------------------------------------------
# One field at a time: rejections and their reason


def _reason_cases(dataset: str, field: str, texts: list[str | None]) -> list[object]:
    cases: list[object] = []
    for text in texts:
        reason = f"missing_{field}" if text in (ABSENT, "null") else f"invalid_{field}"
        cases.append(pytest.param(dataset, field, text, reason, id=f"{field}={text}"))
    return cases


INTEGER_TRAPS: list[str | None] = [
    "0",
    '"0"',
    "-1",
    '"-1"',
    '"+1"',
    str(INT64_MAX + 1),
    f'"{INT64_MAX + 1}"',
    "1" + "0" * 5000,
    '"' + "9" * 5000 + '"',
    "12.0",
    "1e3",
    "1E3",
    "1.5",
    '"12.0"',
    '" 12"',
    '"12 "',
    '""',
    '"1_000"',
    '"0x1F"',
    '"\uff11\uff12"',  # full-width digits
    '"\u0661\u0662"',  # Arabic-Indic digits
    '"\u00b2"',  # superscript two: isdigit() but not a digit of the contract
    "true",
    "false",
    "[1]",
    '{"value": 1}',
    '"abc"',
    ABSENT,
    "null",
]

REJECTED = [
    *_reason_cases("stocks", "stock_id", INTEGER_TRAPS),
    *_reason_cases("stocks", "company_id", ["0", "true", "12.0", '"-5"', ABSENT, "null"]),
    *_reason_cases("mutual_funds", "company_id", ["0", "false", "1e1", '" 7"', ABSENT]),
    *_reason_cases(
        "stocks",
        "volume",
        ["-1", '"-1"', "1.5", "0.0", "1e2", str(INT64_MAX + 1), "true", '"many"', "[]"],
    ),
    *_reason_cases(
        "stocks",
        "symbol",
        [
            '""',
            '"   "',
            '"ABCDEFGHIJKLM"',
            '" ABCDEFGHIJKLM "',
            '"AA PL"',
            '"AAPL$"',
            '"AAPL/B"',
            '"ÄAPL"',
            '"\u0131bm"',  # dotless i: upper() would turn it into a plain I
            '"\ufb00"',  # ligature ff: upper() would turn it into FF
            '"\\u00a0AAPL"',  # no-break space is not ASCII white space, so it is not trimmed
            "123",
            "true",
            '["AAPL"]',
            ABSENT,
            "null",
        ],
    ),
    *_reason_cases(
        "stocks",
        "price",
        [
            "0",
            "0.0",
            '"0"',
            "0e5",
            "-0.0",
            "-1",
            "-0.5",
            '"-189.5"',
            "1000000000000",
            "1000000000000.0",
            "1e12",
            "999999999999.9999999",
            "1.0000001",
            "0.0000001",
            "1e-7",
            "1.5e-6",
            "0.1000000000000000000000000000000001e1",
            '"1,5"',
            '"1 000"',
            '"12 .5"',
            '"+1.5"',
            '".5"',
            '"5."',
            '"1.5f"',
            '"0x10"',
            '"1e"',
            '"e5"',
            '"NaN"',
            '"Infinity"',
            '"\u0661\u0662"',
            '""',
            '"   "',
            "1e999999999",
            "1e-999999999",
            '"1e99999999999999999999999999999999999999"',
            '"1e-99999999999999999999999999999999999999"',
            "true",
            "false",
            "[1]",
            '{"amount": 1}',
            ABSENT,
            "null",
        ],
    ),
    *_reason_cases("stocks", "exchange", ["1", "true", '["NYSE"]', "{}"]),
    *_reason_cases(
        "stocks",
        "currency",
        ['""', '"US"', '"USDX"', '"U$D"', '"ÉUR"', '"U S"', "840", "true", '["USD"]'],
    ),
    *_reason_cases(
        "stocks",
        "timestamp",
        [
            '"2023-02-29T00:00:00Z"',
            '"not a date"',
            "1710513000.5",
            "1.7105e9",
            "-1",
            '"-1710513000"',
            "true",
            '{"epoch": 1}',
            "[1710513000]",
            ABSENT,
            "null",
        ],
    ),
    *_reason_cases(
        "mutual_funds",
        "fund_id",
        ['""', '"   "', '"\\t\\n"', "12.0", "1e3", "true", "[1]", "{}", ABSENT, "null"],
    ),
    *_reason_cases("mutual_funds", "fund_name", ["1", "false", "[]"]),
    *_reason_cases(
        "mutual_funds",
        "holding_weight",
        [
            "0",
            "-5",
            "100.000001",
            "101",
            "1e3",
            "12.3456789",
            "1000",
            '"fifty"',
            "true",
            ABSENT,
            "null",
        ],
    ),
    *_reason_cases(
        "mutual_funds",
        "nav",
        ["0", "-10.25", "1e12", "1.0000001", '"ten"', "false", ABSENT, "null"],
    ),
    *_reason_cases(
        "mutual_funds",
        "as_of",
        ['"2024-02-30"', '"2024-03-15T24:00:00Z"', "1710460800.0", "false", ABSENT, "null"],
    ),
]


@pytest.mark.parametrize(("dataset", "field", "text", "reason"), REJECTED)
def test_rejected_field_value(dataset: str, field: str, text: str | None, reason: str) -> None:
    result = reject(record(BASES[dataset], **{field: text}), SPECS[dataset])
    assert result.reasons == (reason,)


# ------------------------------------------------------------------------------------------
# Event time


ISO_ACCEPTED = [
    ("2024-03-15T14:30:00Z", utc(2024, 3, 15, 14, 30)),
    ("2024-03-15t14:30:00z", utc(2024, 3, 15, 14, 30)),
    ("2024-03-15 14:30:00Z", utc(2024, 3, 15, 14, 30)),
    ("2024-03-15T20:00:00.250+05:30", utc(2024, 3, 15, 14, 30, 0, 250000)),
    ("2024-03-15T09:30:00-05:00", utc(2024, 3, 15, 14, 30)),
    ("2024-03-15T14:30:00+00:00", utc(2024, 3, 15, 14, 30)),
    ("2024-03-15T14:30:00-00:00", utc(2024, 3, 15, 14, 30)),
    ("2024-03-15T14:30:00+23:59", utc(2024, 3, 14, 14, 31)),
    ("2024-03-15T14:30:00-23:59", utc(2024, 3, 16, 14, 29)),
    ("2024-03-15T14:30:00.1Z", utc(2024, 3, 15, 14, 30, 0, 100000)),
    ("2024-03-15T14:30:00.12Z", utc(2024, 3, 15, 14, 30, 0, 120000)),
    ("2024-03-15T14:30:00.000001Z", utc(2024, 3, 15, 14, 30, 0, 1)),
    ("2024-03-15T14:30:00.123456Z", utc(2024, 3, 15, 14, 30, 0, 123456)),
    ("2024-03-15T14:30:00.123456-01:00", utc(2024, 3, 15, 15, 30, 0, 123456)),
    ("  2024-03-15T14:30:00Z\t\n", utc(2024, 3, 15, 14, 30)),
    ("2024-03-15T14:30:00", utc(2024, 3, 15, 14, 30)),
    ("2024-03-15 14:30:00", utc(2024, 3, 15, 14, 30)),
    ("2024-03-15 14:30:00.5", utc(2024, 3, 15, 14, 30, 0, 500000)),
    ("2024-03-15t14:30:00.654321", utc(2024, 3, 15, 14, 30, 0, 654321)),
    ("2024-02-29T00:00:00Z", utc(2024, 2, 29)),
    ("2000-02-29T00:00:00Z", utc(2000, 2, 29)),
    ("2024-12-31T23:59:59Z", utc(2024, 12, 31, 23, 59, 59)),
    ("1969-12-31T23:59:59Z", utc(1969, 12, 31, 23, 59, 59)),
    ("0001-01-01T00:00:00Z", utc(1, 1, 1)),
    ("9999-12-31T23:59:59.999999Z", utc(9999, 12, 31, 23, 59, 59, 999999)),
    # Year 0000 is outside Python's datetime, but the instant after the offset is in range.
    ("0000-12-31T23:00:00-01:00", utc(1, 1, 1)),
    ("9999-12-31T23:59:59+01:00", utc(9999, 12, 31, 22, 59, 59)),
]

EPOCH_ACCEPTED = [
    ("0", utc(1970, 1, 1)),
    ("1710513000", utc(2024, 3, 15, 14, 30)),
    ("0001710513000", utc(2024, 3, 15, 14, 30)),
    (" 1710513000 ", utc(2024, 3, 15, 14, 30)),
    ("99999999999", utc(5138, 11, 16, 9, 46, 39)),  # the last value read as seconds
    ("100000000000", utc(1973, 3, 3, 9, 46, 40)),  # the first value read as milliseconds
    ("1710513000123", utc(2024, 3, 15, 14, 30, 0, 123000)),
    ("253402300799999", utc(9999, 12, 31, 23, 59, 59, 999000)),
]


@pytest.mark.parametrize(("text", "expected"), ISO_ACCEPTED + EPOCH_ACCEPTED)
def test_event_time_string_forms(text: str, expected: datetime) -> None:
    parsed = parse_event_time(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() is not None
    assert parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (JsonNumber("0", True), utc(1970, 1, 1)),
        (JsonNumber("-0", True), utc(1970, 1, 1)),
        (JsonNumber("1710513000", True), utc(2024, 3, 15, 14, 30)),
        (JsonNumber("99999999999", True), utc(5138, 11, 16, 9, 46, 39)),
        (JsonNumber("100000000000", True), utc(1973, 3, 3, 9, 46, 40)),
        (JsonNumber("1710513000123", True), utc(2024, 3, 15, 14, 30, 0, 123000)),
        (JsonNumber("253402300799999", True), utc(9999, 12, 31, 23, 59, 59, 999000)),
    ],
)
def test_event_time_epoch_json_integer(number: JsonNumber, expected: datetime) -> None:
    assert parse_event_time(number) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-10T00:00:00Z",
        "2024-01-00T00:00:00Z",
        "2024-03-15T24:00:00Z",
        "2024-03-15T23:60:00Z",
        "2024-03-15T23:59:60Z",
        "2024-03-15",
        "14:30:00",
        "2024-03-15T14:30Z",
        "2024-03-15T14:30:00.Z",
        "2024-03-15T14:30:00.1234567Z",
        "2024-03-15T14:30:00,5Z",
        "2024-03-15T14:30:00+0530",
        "2024-03-15T14:30:00+05",
        "2024-03-15T14:30:00+24:00",
        "2024-03-15T14:30:00+05:60",
        "2024-03-15T14:30:00 UTC",
        "2024-03-15T14:30:00 Z",
        "2024-03-15T14:30:00[Europe/Paris]",
        "2024-03-15  14:30:00",
        "2024-03-15_14:30:00",
        "2024-3-15T14:30:00Z",
        "24-03-15T14:30:00Z",
        "+2024-03-15T14:30:00Z",
        "12024-03-15T14:30:00Z",
        "2024-03-15T14:30:00ZZ",
        "\u0662\u0660\u0662\u0664-03-15T14:30:00Z",
        "not a date",
        "",
        "   ",
        "-1710513000",
        "+1710513000",
        "1710513000.5",
        "1.7105e9",
        "\uff11\uff17\uff11\uff10",  # full-width digits
        "1 710 513 000",
        # out of range after the offset, or as an epoch
        "9999-12-31T23:59:59-00:01",
        "0001-01-01T00:00:00+00:01",
        "0000-12-31T23:59:59Z",
        "253402300800000",
        "99999999999999999999999999",
        JsonNumber("253402300800000", True),
        JsonNumber("1710513000.5", False),
        JsonNumber("1.7105e9", False),
        JsonNumber("1710513000e0", False),
        JsonNumber("-1", True),
        JsonNumber("-1710513000", True),
        True,
        False,
        None,
        [],
        ["2024-03-15T14:30:00Z"],
        {"at": "2024-03-15T14:30:00Z"},
    ],
    ids=repr,
)
def test_event_time_rejected(value: JsonValue) -> None:
    assert parse_event_time(value) is None


@pytest.mark.parametrize(
    ("zone", "text", "expected"),
    [
        # America/New_York: EST (-05:00) / EDT (-04:00)
        ("America/New_York", "2024-01-15 12:00:00", utc(2024, 1, 15, 17)),
        ("America/New_York", "2024-07-01T12:00:00", utc(2024, 7, 1, 16)),
        ("America/New_York", "2024-03-10 01:59:59", utc(2024, 3, 10, 6, 59, 59)),
        # gap 02:00-03:00: offset before the transition, so 02:30 EST == 03:30 EDT
        ("America/New_York", "2024-03-10 02:00:00", utc(2024, 3, 10, 7)),
        ("America/New_York", "2024-03-10 02:30:00", utc(2024, 3, 10, 7, 30)),
        ("America/New_York", "2024-03-10 03:00:00", utc(2024, 3, 10, 7)),
        ("America/New_York", "2024-11-03 00:59:59", utc(2024, 11, 3, 4, 59, 59)),
        # overlap 01:00-02:00: the earlier instant (EDT)
        ("America/New_York", "2024-11-03 01:00:00", utc(2024, 11, 3, 5)),
        ("America/New_York", "2024-11-03 01:30:00", utc(2024, 11, 3, 5, 30)),
        ("America/New_York", "2024-11-03 02:00:00", utc(2024, 11, 3, 7)),
        # before standard time: local mean time, -04:56:02
        ("America/New_York", "1800-01-01 00:00:00", utc(1800, 1, 1, 4, 56, 2)),
        # an explicit zone or an epoch ignores the source zone
        ("America/New_York", "2024-07-01T12:00:00Z", utc(2024, 7, 1, 12)),
        ("America/New_York", "2024-07-01T12:00:00+02:00", utc(2024, 7, 1, 10)),
        ("America/New_York", "1710513000", utc(2024, 3, 15, 14, 30)),
        ("Asia/Kolkata", "2024-03-15 20:00:00", utc(2024, 3, 15, 14, 30)),
        ("Europe/London", "2024-01-15 12:00:00", utc(2024, 1, 15, 12)),
        ("Europe/London", "2024-07-01 12:00:00", utc(2024, 7, 1, 11)),
        ("Europe/London", "2024-03-31 01:30:00", utc(2024, 3, 31, 1, 30)),  # gap
        ("Europe/London", "2024-10-27 01:30:00", utc(2024, 10, 27, 0, 30)),  # overlap
        # Lord Howe moves its clocks by 30 minutes
        ("Australia/Lord_Howe", "2024-01-15 12:00:00", utc(2024, 1, 15, 1)),
        ("Australia/Lord_Howe", "2024-10-06 02:15:00", utc(2024, 10, 5, 15, 45)),  # gap
        ("Australia/Lord_Howe", "2024-04-07 01:45:00", utc(2024, 4, 6, 14, 45)),  # overlap
        # the last local instant that is still in range, and the first that is not
        ("Asia/Kolkata", "9999-12-31 23:59:59", utc(9999, 12, 31, 18, 29, 59)),
        ("UTC", "9999-12-31 23:59:59.999999", utc(9999, 12, 31, 23, 59, 59, 999999)),
        ("America/New_York", "9999-12-31 23:59:59", None),
        ("America/New_York", "0000-12-31 23:00:00", utc(1, 1, 1, 3, 56, 2)),
        ("Asia/Kolkata", "0001-01-01 00:00:00", None),
    ],
)
def test_naive_time_is_local_time_of_the_source(
    zone: str, text: str, expected: datetime | None
) -> None:
    assert parse_event_time(text, zone) == expected


def test_source_time_zone_reaches_event_time_through_check_record() -> None:
    raw = record(STOCK_BASE, timestamp='"2024-11-03 01:30:00"')
    result = accept(raw, STOCKS, "America/New_York")
    assert result.values["event_time"] == utc(2024, 11, 3, 5, 30)


# ------------------------------------------------------------------------------------------
# Numbers, directly


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (JsonNumber("1", True), 1),
        (JsonNumber(str(INT64_MAX), True), INT64_MAX),
        ("0042", 42),
        (JsonNumber(str(INT64_MAX + 1), True), None),
        (JsonNumber("0", True), None),
        (JsonNumber("-7", True), None),
        (JsonNumber("12.0", False), None),
        (JsonNumber("1e3", False), None),
        (True, None),
        (False, None),
        (None, None),
        ("", None),
    ],
    ids=repr,
)
def test_parse_integer(value: JsonValue, expected: int | None) -> None:
    assert parse_integer(value, STOCKS.field("stock_id")) == expected


def test_parse_integer_without_bounds_is_int64() -> None:
    field = FieldSpec("delta", FieldKind.INTEGER, True)
    assert parse_integer(JsonNumber("-9223372036854775808", True), field) == -(2**63)
    assert parse_integer(JsonNumber("-9223372036854775809", True), field) is None
    assert parse_integer(JsonNumber("-0", True), field) == 0


# A decimal field of another shape shows that the rule reads precision and scale from the
# spec: 3 integer and 2 fractional digits, no bounds at all.
SMALL_DECIMAL = FieldSpec("amount", FieldKind.DECIMAL, True, precision=5, scale=2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123.45", "123.45"),
        ("999.99", "999.99"),
        ("-999.99", "-999.99"),
        ("-1.5", "-1.50"),
        ("0", "0.00"),
        ("-0.0", "0.00"),
        ("0e999999999999999999999999999999", "0.00"),
        ("1.230000", "1.23"),
        ("12345e-2", "123.45"),
        ("1000", None),
        ("1.234", None),
        ("1e3", None),
        ("1e-3", None),
    ],
)
def test_parse_decimal_follows_the_field_shape(text: str, expected: str | None) -> None:
    parsed = parse_decimal(text, SMALL_DECIMAL)
    if expected is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert str(parsed) == expected


def test_parse_decimal_never_goes_through_a_float() -> None:
    # 0.1 + 0.2 style errors and 17-significant-digit floats would show here.
    field = STOCKS.field("price")
    assert str(parse_decimal(JsonNumber("0.3", False), field)) == "0.300000"
    assert str(parse_decimal(JsonNumber("999999999999.999999", False), field)) == (
        "999999999999.999999"
    )
    assert str(parse_decimal("123456789012.345678", field)) == "123456789012.345678"


def test_parse_decimal_rejects_a_float_typed_python_value() -> None:
    assert parse_decimal(True, STOCKS.field("price")) is None
    assert parse_decimal(None, STOCKS.field("price")) is None


# ------------------------------------------------------------------------------------------
# Unknown fields


def test_unknown_fields_are_rescued_in_original_order() -> None:
    raw = (
        '{"sector": "tech", "stock_id": 1, "company_id": 10, "rank": 1.50, "symbol": "AAPL",'
        ' "price": 189.5, "meta": {"tags": ["a", "é"], "big": 1e400, "n": null, "ok": true},'
        ' "timestamp": "2024-03-15T14:30:00Z", "Price": 1, "note": null}'
    )
    result = accept(raw, STOCKS)
    assert result.rescued is not None
    pairs = json.loads(result.rescued, object_pairs_hook=lambda p: p)
    assert [key for key, _ in pairs] == ["sector", "rank", "meta", "Price", "note"]
    assert json.loads(result.rescued, parse_float=Decimal) == {
        "sector": "tech",
        "rank": Decimal("1.50"),
        "meta": {"tags": ["a", "é"], "big": Decimal("1e400"), "n": None, "ok": True},
        "Price": 1,
        "note": None,
    }
    # numbers keep their original text, text is not escaped to ASCII, separators are compact
    assert '"rank":1.50' in result.rescued
    assert '"big":1e400' in result.rescued
    assert '"é"' in result.rescued
    assert ", " not in result.rescued


def test_rescued_escapes_what_json_must_escape() -> None:
    raw = record(STOCK_BASE, comment='"say \\"hi\\"\\n\\\\ \\u0001"')
    result = accept(raw, STOCKS)
    assert result.rescued is not None
    assert json.loads(result.rescued) == {"comment": 'say "hi"\n\\ \x01'}


def test_a_key_in_the_wrong_case_is_unknown() -> None:
    raw = record(STOCK_BASE, price=ABSENT, Price="189.5")
    assert reject(raw, STOCKS).reasons == ("missing_price",)


def test_fields_of_the_other_dataset_are_unknown() -> None:
    raw = record(STOCK_BASE, nav="10.25")
    result = accept(raw, STOCKS)
    assert result.rescued == '{"nav":10.25}'


# ------------------------------------------------------------------------------------------
# The spec drives everything


def test_default_goes_through_the_field_rule() -> None:
    spec = DatasetSpec(
        name="quotes",
        fields=(
            FieldSpec("id", FieldKind.INTEGER, True),
            FieldSpec("ccy", FieldKind.CURRENCY, False, default="eur"),
            FieldSpec("at", FieldKind.EVENT_TIME, True, column="quoted_at"),
        ),
        key=("id",),
        event_time="quoted_at",
    )
    result = accept('{"id": -3, "at": 0}', spec)
    assert result.values == {"id": -3, "ccy": "EUR", "quoted_at": utc(1970, 1, 1)}


def test_a_default_that_breaks_its_rule_is_a_spec_error() -> None:
    spec = DatasetSpec(
        name="broken",
        fields=(FieldSpec("ccy", FieldKind.CURRENCY, False, default="euro"),),
        key=(),
        event_time="at",
    )
    with pytest.raises(ValueError, match="default"):
        check_record("{}", spec)


def test_a_very_long_integer_fund_id_is_its_text() -> None:
    """Python refuses int() of more than 4,300 digits; the reference must not raise."""
    from digital_finance.contract import reference
    from digital_finance.contract.schemas import FUNDS

    digits = "9" * 4301
    raw = (
        f'{{"fund_id": {digits}, "company_id": 1, "holding_weight": 1, "nav": 1, '
        '"as_of": 1700000000}'
    )
    verdict = reference.check_record(raw, FUNDS)
    assert isinstance(verdict, reference.Accepted)
    assert verdict.values["fund_id"] == digits
    zero = reference.check_record(raw.replace(digits, "-0"), FUNDS)
    assert isinstance(zero, reference.Accepted)
    assert zero.values["fund_id"] == "0"
