"""Properties of the reference rules, checked on generated values.

Where the rules tests pin single cases, these generate the instants and decimals first and
then write them in every form the contract accepts: whatever the form, the parsed value must
be the generated one (truncated to what the form can carry).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from digital_finance.contract.reference import (
    Accepted,
    JsonNumber,
    Rejected,
    check_record,
    parse_decimal,
    parse_event_time,
)
from digital_finance.contract.schemas import (
    FUNDS,
    RECORD_REASONS,
    STOCKS,
    DatasetSpec,
    FieldKind,
    FieldSpec,
)

SETTINGS = settings(max_examples=200, deadline=None)

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_MILLIS_FROM = 100_000_000_000
LAST_EPOCH_MILLIS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
ZONES = ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe"]
ASCII_SPACE = " \t\n\r\f\v"
MAX_OFFSET_MINUTES = 23 * 60 + 59


def wall_text(wall: datetime, separator: str, digits: int) -> str:
    """`YYYY-MM-DD<sep>HH:MM:SS[.f{digits}]` of a wall time; strftime does not pad year < 1000."""
    text = (
        f"{wall.year:04d}-{wall.month:02d}-{wall.day:02d}{separator}"
        f"{wall.hour:02d}:{wall.minute:02d}:{wall.second:02d}"
    )
    if digits:
        text += "." + f"{wall.microsecond:06d}"[:digits]
    return text


def truncated(instant: datetime, digits: int) -> datetime:
    unit = 10 ** (6 - digits)
    return instant.replace(microsecond=instant.microsecond // unit * unit)


def offset_text(minutes: int, draw_utc_mark: str) -> str:
    if minutes == 0 and draw_utc_mark:
        return draw_utc_mark
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


padding = st.text(alphabet=ASCII_SPACE, max_size=3)
separators = st.sampled_from(["T", "t", " "])
fraction_digits = st.integers(min_value=0, max_value=6)
# A day of margin at both ends keeps the local wall time representable for any offset.
instants = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30, 23, 59, 59, 999999),
    timezones=st.just(UTC),
)


# ------------------------------------------------------------------------------------------
# Event time


@SETTINGS
@given(
    instant=instants,
    offset_minutes=st.integers(min_value=-MAX_OFFSET_MINUTES, max_value=MAX_OFFSET_MINUTES)
    | st.just(0),
    utc_mark=st.sampled_from(["", "Z", "z"]),
    separator=separators,
    digits=fraction_digits,
    pad=padding,
)
def test_iso_with_offset_round_trips(
    instant: datetime,
    offset_minutes: int,
    utc_mark: str,
    separator: str,
    digits: int,
    pad: str,
) -> None:
    wall = (instant + timedelta(minutes=offset_minutes)).replace(tzinfo=None)
    text = pad + wall_text(wall, separator, digits) + offset_text(offset_minutes, utc_mark) + pad
    # The source zone must not matter once the text carries its own offset.
    assert parse_event_time(text, "America/New_York") == truncated(instant, digits)


@SETTINGS
@given(instant=instants, separator=separators, digits=fraction_digits)
def test_naive_time_in_utc_round_trips(instant: datetime, separator: str, digits: int) -> None:
    text = wall_text(instant.replace(tzinfo=None), separator, digits)
    assert parse_event_time(text) == truncated(instant, digits)


FIRST_INSTANT = datetime(1, 1, 1, tzinfo=UTC)
LAST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


@SETTINGS
@given(
    micros_from_edge=st.integers(min_value=-3 * 86_400 * 10**6, max_value=3 * 86_400 * 10**6)
    | st.sampled_from([-1, 0, 1]),
    offset_minutes=st.integers(min_value=-MAX_OFFSET_MINUTES, max_value=MAX_OFFSET_MINUTES),
    at_the_end=st.booleans(),
)
def test_range_is_checked_after_the_offset(
    micros_from_edge: int, offset_minutes: int, at_the_end: bool
) -> None:
    # Work in microseconds from the edge: the instant itself may lie outside datetime's range.
    edge = LAST_INSTANT if at_the_end else FIRST_INSTANT
    inside = micros_from_edge <= 0 if at_the_end else micros_from_edge >= 0
    wall_micros = micros_from_edge + offset_minutes * 60 * 10**6
    try:
        wall = (edge + timedelta(microseconds=wall_micros)).replace(tzinfo=None)
    except OverflowError:
        return  # the wall time itself cannot be written with a four-digit year >= 0001
    text = wall_text(wall, "T", 6) + offset_text(offset_minutes, "")
    parsed = parse_event_time(text)
    if inside:
        assert parsed == edge + timedelta(microseconds=micros_from_edge)
    else:
        assert parsed is None


@SETTINGS
@given(
    instant=st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(5138, 11, 16, 9, 46, 39, 999999),
        timezones=st.just(UTC),
    ),
    as_string=st.booleans(),
    zeros=st.integers(min_value=0, max_value=5),
    pad=padding,
)
def test_epoch_seconds_round_trip(instant: datetime, as_string: bool, zeros: int, pad: str) -> None:
    seconds = (instant - UNIX_EPOCH) // timedelta(seconds=1)
    assert seconds < EPOCH_MILLIS_FROM
    value = pad + "0" * zeros + str(seconds) + pad if as_string else JsonNumber(str(seconds), True)
    assert parse_event_time(value) == instant.replace(microsecond=0)


@SETTINGS
@given(
    instant=st.datetimes(
        min_value=datetime(1973, 3, 3, 9, 46, 40),
        max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
        timezones=st.just(UTC),
    ),
    as_string=st.booleans(),
)
def test_epoch_millis_round_trip(instant: datetime, as_string: bool) -> None:
    millis = (instant - UNIX_EPOCH) // timedelta(milliseconds=1)
    assert millis >= EPOCH_MILLIS_FROM
    value = str(millis) if as_string else JsonNumber(str(millis), True)
    assert parse_event_time(value) == truncated(instant, 3)


@SETTINGS
@given(
    number=st.integers(min_value=0, max_value=10**17)
    | st.integers(min_value=EPOCH_MILLIS_FROM - 1000, max_value=EPOCH_MILLIS_FROM + 1000)
    | st.integers(min_value=LAST_EPOCH_MILLIS - 1000, max_value=LAST_EPOCH_MILLIS + 1000)
    | st.sampled_from(
        [EPOCH_MILLIS_FROM - 1, EPOCH_MILLIS_FROM, LAST_EPOCH_MILLIS, LAST_EPOCH_MILLIS + 1]
    ),
    as_string=st.booleans(),
    zone=st.sampled_from(ZONES),
)
def test_epoch_unit_follows_the_boundary(number: int, as_string: bool, zone: str) -> None:
    parsed = parse_event_time(str(number) if as_string else JsonNumber(str(number), True), zone)
    if number < EPOCH_MILLIS_FROM:
        assert parsed == UNIX_EPOCH + timedelta(seconds=number)
    elif number <= LAST_EPOCH_MILLIS:
        assert parsed == UNIX_EPOCH + timedelta(milliseconds=number)
    else:
        assert parsed is None


@SETTINGS
@given(
    number=st.integers(min_value=1, max_value=10**15),
    template=st.sampled_from(["-{}", "{}.0", "{}.5", "{}e0", "{}E+0"]),
)
def test_fractional_or_negative_epoch_fails(number: int, template: str) -> None:
    text = template.format(number)
    is_integer = text.lstrip("-").isdigit()
    assert parse_event_time(JsonNumber(text, is_integer)) is None
    assert parse_event_time(text) is None


# Local wall times where the clocks change, so that gaps and overlaps are actually drawn.
CLOCK_CHANGES = [
    ("America/New_York", datetime(2024, 3, 10, 2)),
    ("America/New_York", datetime(2024, 11, 3, 1)),
    ("America/New_York", datetime(1883, 11, 18, 12)),
    ("Europe/London", datetime(2024, 3, 31, 1)),
    ("Europe/London", datetime(2024, 10, 27, 1)),
    ("Australia/Lord_Howe", datetime(2024, 10, 6, 2)),
    ("Australia/Lord_Howe", datetime(2024, 4, 7, 1, 30)),
    ("Asia/Kolkata", datetime(1942, 9, 1)),
]


@st.composite
def zoned_wall_times(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and a naive wall time, often within hours of one of its clock changes."""
    if draw(st.booleans()):
        zone, change = draw(st.sampled_from(CLOCK_CHANGES))
        return zone, change + timedelta(seconds=draw(st.integers(-3 * 3600, 3 * 3600)))
    zone = draw(st.sampled_from(ZONES))
    wall = draw(st.datetimes(min_value=datetime(1850, 1, 1), max_value=datetime(2150, 1, 1)))
    return zone, wall


@SETTINGS
@given(
    instant=st.datetimes(
        min_value=datetime(1850, 1, 1), max_value=datetime(2150, 1, 1), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(ZONES),
    separator=separators,
)
def test_naive_local_time_round_trips_except_in_overlaps(
    instant: datetime, zone: str, separator: str
) -> None:
    local = instant.astimezone(ZoneInfo(zone))
    parsed = parse_event_time(wall_text(local.replace(tzinfo=None), separator, 6), zone)
    if local.fold == 0:
        assert parsed == instant
    else:
        # The second pass through an overlap: the wall time alone names the earlier instant.
        assert parsed is not None
        assert parsed < instant
        assert parsed.astimezone(ZoneInfo(zone)).replace(tzinfo=None) == local.replace(tzinfo=None)


@SETTINGS
@given(zoned=zoned_wall_times())
def test_naive_local_time_moves_forward_only_in_gaps(zoned: tuple[str, datetime]) -> None:
    zone_name, wall = zoned
    zone = ZoneInfo(zone_name)
    parsed = parse_event_time(wall_text(wall, " ", 6), zone_name)
    assert parsed is not None
    # Python's own fold=0 reading of the wall time is the contract's.
    assert parsed == wall.replace(tzinfo=zone).astimezone(UTC)
    shown = parsed.astimezone(zone).replace(tzinfo=None)
    if shown != wall:
        before = wall.replace(tzinfo=zone, fold=0).utcoffset()
        after = wall.replace(tzinfo=zone, fold=1).utcoffset()
        assert before is not None
        assert after is not None
        # A gap: the clock jumped forward, and the time moves by the gap's length.
        assert after > before
        assert shown == wall + (after - before)


# ------------------------------------------------------------------------------------------
# Decimals

PRICE = STOCKS.field("price")
WEIGHT = FUNDS.field("holding_weight")
SCALE_UNIT = Decimal("0.000001")


def in_bounds(field: FieldSpec) -> st.SearchStrategy[Decimal]:
    assert field.max_value is not None
    return st.decimals(
        min_value=SCALE_UNIT,
        max_value=Decimal(field.max_value),
        places=6,
        allow_nan=False,
        allow_infinity=False,
    )


def plain(value: Decimal) -> str:
    """Shortest plain text: no exponent, no trailing fractional zeros."""
    return format(value.normalize(), "f")


@st.composite
def renderings(draw: st.DrawFn, value: Decimal) -> str:
    """Some text of the JSON-number grammar whose value is exactly `value`."""
    style = draw(st.sampled_from(["plain", "zeros", "exponent"]))
    if style == "plain":
        return plain(value)
    if style == "zeros":
        text = plain(value)
        return text + ("" if "." in text else ".") + "0" * draw(st.integers(1, 12))
    shift = draw(st.integers(-20, 20))
    mantissa = plain(value.scaleb(shift))
    exponent = -shift
    marker = draw(st.sampled_from(["e", "E"]))
    sign = "-" if exponent < 0 else draw(st.sampled_from(["", "+"]))
    return f"{mantissa}{marker}{sign}{abs(exponent)}"


def fund_record(weight_text: str, nav_text: str) -> str:
    return (
        '{"fund_id": "F", "company_id": 1, "holding_weight": '
        + weight_text
        + ', "nav": '
        + nav_text
        + ', "as_of": "2024-03-15T00:00:00Z"}'
    )


@SETTINGS
@given(data=st.data(), field=st.sampled_from([PRICE, WEIGHT]))
def test_decimal_round_trips_in_every_form(data: st.DataObject, field: FieldSpec) -> None:
    value = data.draw(in_bounds(field))
    expected = str(value.quantize(SCALE_UNIT))
    text = data.draw(renderings(value))
    as_number = parse_decimal(JsonNumber(text, text.isdigit()), field)
    pad = data.draw(padding)
    leading = "0" * data.draw(st.integers(0, 3))
    as_string = parse_decimal(pad + leading + text + pad, field)
    assert as_number == value
    assert str(as_number) == expected
    assert str(as_string) == expected


@SETTINGS
@given(data=st.data())
def test_decimal_round_trips_through_records(data: st.DataObject) -> None:
    weight = data.draw(in_bounds(WEIGHT))
    nav = data.draw(in_bounds(PRICE))
    weight_text = data.draw(renderings(weight))
    nav_text = data.draw(renderings(nav))
    if data.draw(st.booleans()):
        nav_text = json.dumps(data.draw(padding) + nav_text)
    result = check_record(fund_record(weight_text, nav_text), FUNDS)
    assert isinstance(result, Accepted), (weight_text, nav_text, result)
    assert str(result.values["holding_weight"]) == str(weight.quantize(SCALE_UNIT))
    assert str(result.values["nav"]) == str(nav.quantize(SCALE_UNIT))


@SETTINGS
@given(
    data=st.data(),
    field=st.sampled_from([PRICE, WEIGHT]),
    seventh=st.integers(1, 9),
    more=st.text(alphabet="0123456789", max_size=5),
)
def test_a_seventh_fractional_digit_is_rejected(
    data: st.DataObject, field: FieldSpec, seventh: int, more: str
) -> None:
    value = data.draw(st.decimals(min_value=0, max_value=Decimal(field.max_value or 0), places=6))
    text = format(value.quantize(SCALE_UNIT), "f") + str(seventh) + more
    long_value = Decimal(text)
    assert parse_decimal(JsonNumber(text, False), field) is None
    assert parse_decimal(text, field) is None
    assert parse_decimal(data.draw(renderings(long_value)), field) is None


@SETTINGS
@given(data=st.data(), field=st.sampled_from([PRICE, WEIGHT]))
def test_a_value_above_the_bound_is_rejected(data: st.DataObject, field: FieldSpec) -> None:
    assert field.max_value is not None
    ceiling = Decimal(field.max_value)
    value = data.draw(
        st.decimals(min_value=ceiling + SCALE_UNIT, max_value=ceiling + 2, places=6)
        | st.just(ceiling + SCALE_UNIT)
    )
    assert parse_decimal(data.draw(renderings(value)), field) is None
    assert parse_decimal(data.draw(renderings(ceiling)), field) == ceiling


@SETTINGS
@given(
    integer_part=st.integers(min_value=10**12, max_value=10**30), fraction=st.integers(0, 999999)
)
def test_a_thirteenth_integer_digit_is_rejected(integer_part: int, fraction: int) -> None:
    assert parse_decimal(JsonNumber(f"{integer_part}.{fraction:06d}", False), PRICE) is None
    assert parse_decimal(JsonNumber(f"{integer_part}", True), PRICE) is None


# ------------------------------------------------------------------------------------------
# check_record is total

FIELD_NAMES = sorted({*STOCKS.field_names, *FUNDS.field_names})
ODD_LITERALS = [
    "null",
    "true",
    "false",
    "NaN",
    "-Infinity",
    "1e999999999",
    "1e-999999999",
    "-0",
    "0.0",
    "12.0",
    "1E-7",
    "9223372036854775808",
    '"2024-03-10 02:30:00"',
    '"2024-02-29T00:00:00Z"',
    '"24:00"',
    '"\\ud800"',
    '"1710513000"',
    '" aapl "',
    '"usd"',
]
# Values every JSON parser takes (no NaN, no lone surrogate), so a record can be accepted.
clean_scalar_texts = st.one_of(
    st.sampled_from(["null", "true", "false", "-0", "0.0", "12.0", "1E-7", "1e999999999"]),
    st.integers().map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.text(max_size=12).map(lambda text: json.dumps(text, ensure_ascii=False)),
    st.text(max_size=12).map(json.dumps),
)
scalar_texts = st.one_of(
    clean_scalar_texts,
    st.sampled_from(ODD_LITERALS),
    st.datetimes().map(lambda moment: json.dumps(moment.isoformat(sep=" "))),
)
keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=6)


def object_text(members: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in members) + "}"


json_texts = st.recursive(
    scalar_texts,
    lambda children: (
        st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
        | st.lists(st.tuples(keys, children), max_size=8).map(object_text)
    ),
    max_leaves=25,
)
clean_json_texts = st.recursive(
    clean_scalar_texts,
    lambda children: (
        st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
        | st.lists(
            st.tuples(st.text(max_size=6), children), max_size=5, unique_by=lambda kv: kv[0]
        ).map(object_text)
    ),
    max_leaves=15,
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """JSON-ish text, sometimes broken by cutting a slice out and pasting a few characters in."""
    text = draw(json_texts)
    if draw(st.booleans()):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, len(text)))
        text = text[:start] + draw(st.text(max_size=3)) + text[end:]
    return text


KIND_TYPES: dict[FieldKind, type] = {
    FieldKind.INTEGER: int,
    FieldKind.DECIMAL: Decimal,
    FieldKind.EVENT_TIME: datetime,
    FieldKind.SYMBOL: str,
    FieldKind.CURRENCY: str,
    FieldKind.IDENTIFIER: str,
    FieldKind.TEXT: str,
}


def assert_well_formed(result: Accepted | Rejected, spec: DatasetSpec) -> None:
    if isinstance(result, Rejected):
        assert result.reasons
        field_reasons = {f.missing_reason for f in spec.fields} | {
            f.invalid_reason for f in spec.fields
        }
        if result.reason in RECORD_REASONS:
            assert len(result.reasons) == 1
        else:
            assert set(result.reasons) <= field_reasons
            order = [
                reason
                for f in spec.fields
                for reason in (f.missing_reason, f.invalid_reason)
                if reason in result.reasons
            ]
            assert list(result.reasons) == order
        return
    assert isinstance(result, Accepted)
    assert list(result.values) == [f.silver_name for f in spec.fields]
    for f in spec.fields:
        stored = result.values[f.silver_name]
        if stored is None:
            assert not f.required
        else:
            assert type(stored) is KIND_TYPES[f.kind]
    if result.rescued is not None:
        rescued = json.loads(result.rescued)
        assert isinstance(rescued, dict)
        assert rescued
        assert not set(rescued) & set(spec.field_names)


@SETTINGS
@given(raw=st.text(), spec=st.sampled_from([STOCKS, FUNDS]))
def test_check_record_never_raises_on_any_text(raw: str, spec: DatasetSpec) -> None:
    assert_well_formed(check_record(raw, spec), spec)


@SETTINGS
@given(raw=mutated(), spec=st.sampled_from([STOCKS, FUNDS]), zone=st.sampled_from(ZONES))
def test_check_record_never_raises_on_json_like_text(
    raw: str, spec: DatasetSpec, zone: str
) -> None:
    assert_well_formed(check_record(raw, spec, zone), spec)


def exact_json(text: str) -> object:
    """Decoded JSON with exact numbers and objects as key-ordered pair lists."""
    return json.loads(text, object_pairs_hook=list, parse_float=Decimal, parse_int=Decimal)


STOCK_MEMBERS = [
    ("stock_id", "1"),
    ("company_id", "10"),
    ("symbol", '"AAPL"'),
    ("price", "189.5"),
    ("timestamp", '"2024-03-15T14:30:00Z"'),
]


@SETTINGS
@given(
    unknown=st.lists(
        st.tuples(
            st.text(max_size=8).filter(lambda key: key not in STOCKS.field_names),
            clean_json_texts,
        ),
        max_size=5,
        unique_by=lambda kv: kv[0],
    ),
    positions=st.lists(st.integers(0, len(STOCK_MEMBERS)), min_size=5, max_size=5),
)
def test_rescued_holds_exactly_the_unknown_fields(
    unknown: list[tuple[str, str]], positions: list[int]
) -> None:
    members = list(STOCK_MEMBERS)
    for (key, value), position in zip(unknown, positions, strict=False):
        members.insert(min(position, len(members)), (key, value))
    result = check_record(object_text(members), STOCKS)
    assert isinstance(result, Accepted), result
    if not unknown:
        assert result.rescued is None
        return
    assert result.rescued is not None
    # Compared as values, with numbers exact, and keys in the order of the record.
    rescued = exact_json(result.rescued)
    expected = [(key, exact_json(value)) for key, value in members if key not in STOCKS.field_names]
    assert rescued == expected
