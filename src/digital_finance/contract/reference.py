"""The contract rules, one record at a time, in plain Python.

This module is the readable specification of `shared/CONTRACT.md` as decided in
`docs/CONTRACT_RULES.md`. The vectorised engines are tested against it, and they call
`check_record` as their slow path for records they cannot classify cheaply, so it has to be
exact (numbers never pass through a binary float) and must never raise for any input text.

Fields are walked generically from the `DatasetSpec`: a rule belongs to a `FieldKind`, never
to a field name. Decoding a record exactly, and writing `_rescued`, is `json_exact`'s job.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Final, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digital_finance.contract.json_exact import JsonNumber, JsonValue, _decode_record, _dump
from digital_finance.contract.schemas import (
    DUPLICATE_KEY,
    INVALID_JSON,
    MAX_INT64,
    NESTING_TOO_DEEP,
    NOT_AN_OBJECT,
    DatasetSpec,
    FieldKind,
    FieldSpec,
)

__all__ = [
    "Accepted",
    "JsonNumber",
    "JsonValue",
    "Rejected",
    "check_record",
    "parse_decimal",
    "parse_event_time",
    "parse_integer",
    "stored_default",
]


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Accepted:
    """A record that holds to every rule of its dataset.

    `values` maps each silver column (`FieldSpec.silver_name`, in contract field order) to its
    typed value: `int` for integers, `Decimal` quantized to the field's scale for decimals, a
    UTC-aware `datetime` for event times, `str` for the string kinds, and `None` (or the
    field's default) for an absent optional field. `rescued` is the JSON object text of the
    fields the contract does not name, in their original order, or `None` when there are none.
    """

    values: dict[str, object]
    rescued: str | None


@dataclass(frozen=True)
class Rejected:
    """A record that breaks at least one rule.

    `reasons` lists every broken rule in contract field order; a whole-record reason
    (`invalid_json`, `not_an_object`, `duplicate_key`) always stands alone.
    """

    reasons: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.reasons:
            raise ValueError("a rejected record needs at least one reason")

    @property
    def reason(self) -> str:
        """The reason stored in the quarantine `reason` column: the first broken rule."""
        return self.reasons[0]


# The rejections for the whole-record reasons decoding finds, built once: decoding names
# the reason, and every record with it shares its Rejected.
_WHOLE_RECORD_REJECTIONS: Final = {
    reason: Rejected((reason,))
    for reason in (NESTING_TOO_DEEP, INVALID_JSON, NOT_AN_OBJECT, DUPLICATE_KEY)
}


# --------------------------------------------------------------------------------------------
# Field kinds

# "Trim" in the contract removes ASCII white space only; str.strip() would also remove
# Unicode spaces such as U+00A0, which no vectorised engine trims the same way.
_ASCII_SPACE: Final = " \t\n\r\f\v"

_MIN_INT64: Final = -(2**63)
# Any value with more digits than this is outside int64 whatever the field allows, which
# also keeps int() away from Python's limit on very long digit strings.
_INT64_DIGITS: Final = 19


def _is_ascii_digits(text: str) -> bool:
    # str.isdigit() alone accepts other scripts' digits and superscripts.
    return text.isascii() and text.isdigit()


def parse_integer(value: JsonValue, field: FieldSpec) -> int | None:
    """The integer a JSON value stands for under `field`'s bounds, or None if invalid.

    Accepted: a JSON integer (no fraction, no exponent) or a string of ASCII digits (no sign,
    no spaces, leading zeros allowed). Booleans, `12.0`, `1e3` and everything else are
    invalid, as is a value outside `field.min_value..field.max_value` (or int64).
    """
    if isinstance(value, JsonNumber):
        if not value.is_integer:
            return None
        negative = value.text.startswith("-")
        digits = value.text.lstrip("-")
    elif isinstance(value, str):
        if not _is_ascii_digits(value):
            return None
        negative = False
        digits = value
    else:
        # bool lands here too: it is never a JsonNumber.
        return None
    significant = digits.lstrip("0")
    if len(significant) > _INT64_DIGITS:
        return None
    number = int(significant or "0")
    if negative:
        number = -number
    low = _MIN_INT64 if field.min_value is None else max(_MIN_INT64, field.min_value)
    high = MAX_INT64 if field.max_value is None else min(MAX_INT64, field.max_value)
    if not low <= number <= high:
        return None
    return number


# The grammar of a JSON number, with leading zeros allowed (strings may carry them).
_DECIMAL_TEXT: Final = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?)([0-9]+))?")
# An exponent this long puts any non-zero value out of every bound: a line would need more
# than 10**18 characters of digits to bring it back into range.
_MAX_EXPONENT_DIGITS: Final = 18


def parse_decimal(value: JsonValue, field: FieldSpec) -> Decimal | None:
    """The exact decimal a JSON value stands for, quantized to `field.scale`, or None.

    Accepted: a JSON number, or a string that after trimming is a JSON number (leading zeros
    allowed). The value is read from the text, never through a float. It must have at most
    `scale` fractional digits as a value (`1.2500000` and `1.5e-3` are fine for scale 6,
    `1e-7` is not), at most `precision - scale` integer digits, and lie within the field's
    bounds (`exclusive_min` < v, `min_value` <= v <= `max_value`).
    """
    if isinstance(value, JsonNumber):
        text = value.text
    elif isinstance(value, str):
        text = value.strip(_ASCII_SPACE)
    else:
        return None
    match = _DECIMAL_TEXT.fullmatch(text)
    if match is None:
        return None
    sign, whole, fraction, exponent_sign, exponent_digits = match.groups()
    fraction = fraction or ""
    scale = field.scale
    digits = (whole + fraction).lstrip("0")
    coefficient = digits.rstrip("0")
    if not coefficient:
        # Zero, whatever its exponent; its sign does not survive into the stored value.
        number = Decimal(f"0E-{scale}")
    else:
        exponent = 0
        if exponent_digits is not None:
            exponent_text = exponent_digits.lstrip("0")
            if len(exponent_text) > _MAX_EXPONENT_DIGITS:
                return None
            exponent = int(exponent_text or "0")
            if exponent_sign == "-":
                exponent = -exponent
        # value == int(coefficient) * 10**exponent, with no trailing zeros in coefficient.
        exponent += len(digits) - len(coefficient) - len(fraction)
        if exponent < -scale:
            return None
        if len(coefficient) + exponent > field.precision - scale:
            return None
        # Both checks above bound the size of this integer by `precision` digits.
        scaled = int(coefficient) * 10 ** (exponent + scale)
        number = Decimal(f"{sign}{scaled}E-{scale}")
    if field.exclusive_min is not None and not number > field.exclusive_min:
        return None
    if field.min_value is not None and number < field.min_value:
        return None
    if field.max_value is not None and number > field.max_value:
        return None
    return number


_US_PER_SECOND: Final = 1_000_000
_US_PER_DAY: Final = 86_400 * _US_PER_SECOND
# Instants are computed as microseconds since 0001-01-01T00:00:00 so that an offset may move
# a local time across the edge of Python's datetime range without an OverflowError.
_MAX_US: Final = date(9999, 12, 31).toordinal() * _US_PER_DAY - 1
_UNIX_EPOCH_US: Final = (date(1970, 1, 1).toordinal() - 1) * _US_PER_DAY
_DATETIME_ORIGIN: Final = datetime(1, 1, 1, tzinfo=UTC)
_EPOCH_MILLIS_FROM: Final = 100_000_000_000
_EPOCH_DIGITS: Final = 16  # 9999-12-31 in epoch milliseconds has 15 digits
# Year 0000 is a leap year in the proleptic Gregorian calendar, like year 0004, and
# 1461 days lie between their first days; datetime.date cannot hold year 0 itself.
_DAYS_YEAR0_TO_YEAR4: Final = 1461

_ISO_TIME: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,6}))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?"
)


def _from_us(us: int) -> datetime | None:
    if not 0 <= us <= _MAX_US:
        return None
    days, rest = divmod(us, _US_PER_DAY)
    return _DATETIME_ORIGIN + timedelta(days=days, microseconds=rest)


def _epoch(digits: str) -> datetime | None:
    significant = digits.lstrip("0")
    if len(significant) > _EPOCH_DIGITS:
        return None
    number = int(significant or "0")
    if number < _EPOCH_MILLIS_FROM:
        return _from_us(_UNIX_EPOCH_US + number * _US_PER_SECOND)
    return _from_us(_UNIX_EPOCH_US + number * 1_000)


def _iso(text: str, zone: ZoneInfo | None) -> datetime | None:
    match = _ISO_TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, utc_mark, offset_sign, offset_hours, offset_minutes = match.groups()[6:]
    if hour > 23 or minute > 59 or second > 59:
        return None
    try:
        ordinal = date(year or 4, month, day).toordinal()
    except ValueError:
        return None
    if year == 0:
        ordinal -= _DAYS_YEAR0_TO_YEAR4
    micros = int(fraction.ljust(6, "0")) if fraction else 0
    local_us = (
        (ordinal - 1) * _US_PER_DAY + ((hour * 60 + minute) * 60 + second) * _US_PER_SECOND + micros
    )
    if utc_mark is not None:
        offset_us = 0
    elif offset_sign is not None:
        hours, minutes = int(offset_hours), int(offset_minutes)
        if hours > 23 or minutes > 59:
            return None
        offset_us = (hours * 60 + minutes) * 60 * _US_PER_SECOND
        if offset_sign == "-":
            offset_us = -offset_us
    elif zone is None:
        offset_us = 0
    else:
        # fold=0 (the default) is the contract's choice for overlaps (earlier instant) and
        # gaps (offset before the transition). Before a zone's first transition its offset
        # is constant, so year 0000 may borrow the offset of 0001-01-01.
        wall = (
            datetime(year, month, day, hour, minute, second, micros, tzinfo=zone)
            if year
            else datetime(1, 1, 1, tzinfo=zone)
        )
        offset = wall.utcoffset()
        offset_us = 0 if offset is None else offset // timedelta(microseconds=1)
    return _from_us(local_us - offset_us)


def _event_time(value: JsonValue, zone: ZoneInfo | None) -> datetime | None:
    if isinstance(value, JsonNumber):
        # A negative epoch fails; "-0" is the integer zero, as it is for the integer rule.
        if not value.is_integer or (value.text.startswith("-") and value.text != "-0"):
            return None
        return _epoch(value.text.lstrip("-"))
    if not isinstance(value, str):
        return None
    text = value.strip(_ASCII_SPACE)
    if _is_ascii_digits(text):
        return _epoch(text)
    return _iso(text, zone)


@functools.lru_cache(maxsize=64)
def _zone(source_tz: str) -> ZoneInfo | None:
    """The source's time zone; None stands for UTC, where no lookup is needed."""
    if source_tz == "UTC":
        return None
    try:
        return ZoneInfo(source_tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {source_tz!r}") from exc


def parse_event_time(value: JsonValue, source_tz: str = "UTC") -> datetime | None:
    """The UTC instant a JSON value stands for, or None if it is not a valid event time.

    Accepted: an ISO-8601 / RFC 3339 string (`YYYY-MM-DD`, `T`/`t`/space, `HH:MM:SS`, 1-6
    fractional digits, `Z`/`z`/`±HH:MM`), where a time without zone is local time of
    `source_tz` (fold=0 for gaps and overlaps); or an epoch as a JSON integer or a digit
    string (below 100,000,000,000 seconds, otherwise milliseconds). Strings are trimmed. The
    result is timezone-aware UTC and lies within 0001-01-01..9999-12-31T23:59:59.999999.

    Raises ValueError when `source_tz` is not a known IANA time zone: that is a
    configuration error, not a property of the record.
    """
    return _event_time(value, _zone(source_tz))


def _symbol(value: JsonValue) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip(_ASCII_SPACE)
    if _SYMBOL.fullmatch(text) is None:
        return None
    return text.upper()


def _currency(value: JsonValue) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip(_ASCII_SPACE)
    if _CURRENCY.fullmatch(text) is None:
        return None
    return text.upper()


def _identifier(value: JsonValue) -> str | None:
    if isinstance(value, JsonNumber):
        # The integer's decimal string. A JSON integer has no leading zeros, so that is its
        # text, except "-0", the integer 0. (Not str(int(...)): Python refuses to convert
        # integers of more than 4,300 digits, and the reference must never raise.)
        if not value.is_integer:
            return None
        return "0" if value.text == "-0" else value.text
    if not isinstance(value, str):
        return None
    return value.strip(_ASCII_SPACE) or None


def _text(value: JsonValue) -> str | None:
    return value if isinstance(value, str) else None


# ASCII-only classes: upper() of these can never produce a letter outside A-Z.
_SYMBOL: Final = re.compile(r"[A-Za-z0-9.\-]{1,12}")
_CURRENCY: Final = re.compile(r"[A-Za-z]{3}")

# One converter per kind; each returns the typed value, or None when the value is invalid.
_Converter: TypeAlias = Callable[[JsonValue, FieldSpec, ZoneInfo | None], object]
_CONVERTERS: Final[dict[FieldKind, _Converter]] = {
    FieldKind.INTEGER: lambda value, field, _tz: parse_integer(value, field),
    FieldKind.DECIMAL: lambda value, field, _tz: parse_decimal(value, field),
    FieldKind.EVENT_TIME: lambda value, _field, zone: _event_time(value, zone),
    FieldKind.SYMBOL: lambda value, _field, _tz: _symbol(value),
    FieldKind.CURRENCY: lambda value, _field, _tz: _currency(value),
    FieldKind.IDENTIFIER: lambda value, _field, _tz: _identifier(value),
    FieldKind.TEXT: lambda value, _field, _tz: _text(value),
}


# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    """One field, with what check_record reads per record computed once.

    FieldSpec's reason and column properties build their strings on every access.
    """

    spec: FieldSpec
    name: str
    column: str
    required: bool
    missing: str
    invalid: str
    convert: _Converter
    absent: object  # the stored value when the field is absent (optional fields only)


@dataclass(frozen=True, slots=True)
class _DatasetPlan:
    spec: DatasetSpec
    fields: tuple[_FieldPlan, ...]
    known: frozenset[str]


# Keyed by id() with the spec kept alive inside the plan: hashing a DatasetSpec walks every
# field on every call, which would cost more than checking a small record. Specs are module
# constants in practice; the bound only guards callers that build specs on the fly.
_PLANS: dict[int, _DatasetPlan] = {}
_MAX_PLANS: Final = 64


def stored_default(field: FieldSpec) -> object:
    """What an absent optional field is stored as: its default through its own rule, or None.

    The default goes through the rule, so a default of "usd" would be stored "USD".
    """
    if field.default is None:
        return None
    return _CONVERTERS[field.kind](field.default, field, None)


def _plan(spec: DatasetSpec) -> _DatasetPlan:
    plan = _PLANS.get(id(spec))
    if plan is not None and plan.spec is spec:
        return plan
    fields = []
    for field in spec.fields:
        convert = _CONVERTERS[field.kind]
        absent = stored_default(field)
        if field.default is not None and absent is None:
            raise ValueError(f"{spec.name}.{field.name}: default breaks the field's rule")
        fields.append(
            _FieldPlan(
                spec=field,
                name=field.name,
                column=field.silver_name,
                required=field.required,
                missing=field.missing_reason,
                invalid=field.invalid_reason,
                convert=convert,
                absent=absent,
            )
        )
    plan = _DatasetPlan(spec, tuple(fields), frozenset(spec.field_names))
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[id(spec)] = plan
    return plan


def check_record(raw: str, spec: DatasetSpec, source_tz: str = "UTC") -> Accepted | Rejected:
    """Check one raw record (the text of one JSON value) against a dataset of the contract.

    Returns `Accepted` with the typed silver values and `_rescued`, or `Rejected` with every
    broken rule. Never raises for any `raw` text; raises ValueError only for a bad
    `source_tz` (configuration, checked even when no record needs it).
    """
    zone = _zone(source_tz)
    plan = _plan(spec)
    record = _decode_record(raw)
    if isinstance(record, str):
        return _WHOLE_RECORD_REJECTIONS[record]
    values: dict[str, object] = {}
    reasons: list[str] = []
    for field in plan.fields:
        value = record.get(field.name)
        if value is None:
            # JSON null counts as absent.
            if field.required:
                reasons.append(field.missing)
            else:
                values[field.column] = field.absent
            continue
        typed = field.convert(value, field.spec, zone)
        if typed is None:
            reasons.append(field.invalid)
        else:
            values[field.column] = typed
    if reasons:
        return Rejected(tuple(reasons))
    unknown = {key: value for key, value in record.items() if key not in plan.known}
    return Accepted(values, _dump(unknown) if unknown else None)
