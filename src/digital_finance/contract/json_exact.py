"""Exact JSON decoding of one record, and compact JSON text of a decoded value.

The contract's rules need more than `json.loads` gives: numbers must keep their source text
(so that `12`, `12.0` and `1.2e1` stay apart and no value passes through a binary float), an
object that names a key twice must be noticed, and text Python accepts but RFC 8259 does not
(`NaN`, `Infinity`, lone surrogates) must be refused. `_decode_record` decodes one record that
way or names its whole-record reason; `_dump` writes a decoded value back as compact JSON with
its numbers unchanged, as the `_rescued` column holds it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Final, NoReturn, TypeAlias

from digital_finance.contract.schemas import (
    DUPLICATE_KEY,
    INVALID_JSON,
    MAX_NESTING_DEPTH,
    NESTING_TOO_DEEP,
    NOT_AN_OBJECT,
)

__all__ = ["JsonNumber", "JsonValue"]


@dataclass(frozen=True, slots=True)
class JsonNumber:
    """A JSON number kept as its exact source text.

    `is_integer` is true when the text has neither a fraction nor an exponent, so that `12`
    can be told apart from `12.0` and `1.2e1`, which the contract does not take as integers.
    """

    text: str
    is_integer: bool


# A decoded JSON value. Numbers stay text (JsonNumber); booleans stay `bool` and must never be
# mistaken for integers, although Python makes `bool` a subclass of `int`.
JsonValue: TypeAlias = "bool | str | JsonNumber | list[JsonValue] | dict[str, JsonValue] | None"


class _InvalidJsonError(ValueError):
    """Raised inside the decoder for text RFC 8259 does not allow (NaN, Infinity)."""


class _DuplicateKeyError(Exception):
    """Raised inside the strict decoder when an object names a key twice.

    Deliberately not a ValueError, so it cannot be confused with malformed JSON.
    """


def _json_integer(text: str) -> JsonNumber:
    return JsonNumber(text, True)


def _json_fraction(text: str) -> JsonNumber:
    return JsonNumber(text, False)


def _reject_constant(name: str) -> NoReturn:
    raise _InvalidJsonError(f"{name} is not JSON")


def _unique_object(pairs: list[tuple[str, JsonValue]]) -> dict[str, JsonValue]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKeyError
    return obj


def _any_object(pairs: list[tuple[str, JsonValue]]) -> dict[str, JsonValue]:
    return dict(pairs)


# Two decoders built once: the strict one is the fast path; the lenient one only runs after a
# duplicate key, to find out whether an earlier whole-record reason (invalid_json,
# not_an_object) takes precedence over duplicate_key.
_STRICT_DECODER: Final = json.JSONDecoder(
    parse_int=_json_integer,
    parse_float=_json_fraction,
    parse_constant=_reject_constant,
    object_pairs_hook=_unique_object,
)
_LENIENT_DECODER: Final = json.JSONDecoder(
    parse_int=_json_integer,
    parse_float=_json_fraction,
    parse_constant=_reject_constant,
    object_pairs_hook=_any_object,
)

# A string holding half of a surrogate pair cannot be written as UTF-8, so silver could not
# store it. Python's decoder accepts `"\ud800"`; we treat it as text that is not valid JSON
# (RFC 8259 section 8.2 leaves it undefined, I-JSON forbids it).
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: JsonValue) -> bool:
    # Iterative, because a nesting depth the decoder accepted must not overflow here.
    todo: list[JsonValue] = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, dict):
            for key, member in item.items():
                if _SURROGATE.search(key):
                    return True
                todo.append(member)
    return False


_NESTING_TOKEN: Final = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]')


def nesting_exceeds(raw: str, limit: int = MAX_NESTING_DEPTH) -> bool:
    """Whether brackets outside strings nest deeper than `limit`, without parsing the text."""
    if raw.count("[") + raw.count("{") <= limit:
        return False
    depth = 0
    for token in _NESTING_TOKEN.finditer(raw):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return True
        elif bracket in "]}":
            depth -= 1
    return False


def _decode_record(raw: str) -> dict[str, JsonValue] | str:
    """Decode one record into a JSON object, or return its whole-record reason.

    The reason is `nesting_too_deep` (decided before parsing), `invalid_json`,
    `not_an_object` or `duplicate_key`, in that precedence.
    """
    if nesting_exceeds(raw):
        return NESTING_TOO_DEEP
    duplicated = False
    try:
        decoded: JsonValue = _STRICT_DECODER.decode(raw)
    except _DuplicateKeyError:
        duplicated = True
        try:
            decoded = _LENIENT_DECODER.decode(raw)
        except (ValueError, RecursionError):
            return INVALID_JSON
    except (ValueError, RecursionError):
        # RecursionError cannot come from nesting within the limit; kept as a last guard
        return INVALID_JSON
    if not raw.isascii() and _SURROGATE.search(raw):
        return INVALID_JSON
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(decoded):
        return INVALID_JSON
    if not isinstance(decoded, dict):
        return NOT_AN_OBJECT
    if duplicated:
        return DUPLICATE_KEY
    return decoded


# --------------------------------------------------------------------------------------------
# Writing `_rescued`


@dataclass(frozen=True, slots=True)
class _Token:
    """Punctuation queued by the encoder, kept apart from JSON strings that look the same."""

    text: str


_COMMA: Final = _Token(",")
_END_ARRAY: Final = _Token("]")
_END_OBJECT: Final = _Token("}")


def _dump(value: JsonValue) -> str:
    """Compact JSON text of a decoded value; numbers keep their original text.

    Equivalent to `json.dumps(value, separators=(",", ":"), ensure_ascii=False)` except for
    the numbers, and iterative so that depth cannot overflow the stack.
    """
    out: list[str] = []
    todo: list[JsonValue | _Token] = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, _Token):
            out.append(item.text)
        elif item is None:
            out.append("null")
        elif item is True:
            out.append("true")
        elif item is False:
            out.append("false")
        elif isinstance(item, str):
            out.append(encode_basestring(item))
        elif isinstance(item, JsonNumber):
            out.append(item.text)
        elif isinstance(item, list):
            out.append("[")
            todo.append(_END_ARRAY)
            for index in range(len(item) - 1, -1, -1):
                todo.append(item[index])
                if index:
                    todo.append(_COMMA)
        else:
            out.append("{")
            todo.append(_END_OBJECT)
            entries = list(item.items())
            for index in range(len(entries) - 1, -1, -1):
                key, member = entries[index]
                todo.append(member)
                todo.append(_Token(("," if index else "") + encode_basestring(key) + ":"))
    return "".join(out)
