"""Which Arrow types an enrichment may declare, and which returned types may be cast to them.

Declared types must be storable the same way by both engines: Delta Lake has no unsigned
integers, no 256-bit decimals and keeps timestamps in microseconds, and Spark reads columns
back with those types. A returned array is cast to its declared type only when the cast
cannot change a value (a "safe" Arrow cast within one family, which fails instead of
truncating); anything else, such as float to decimal, is the enrichment's bug to fix.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

_SCALARS: frozenset[Any] = frozenset(
    {
        pa.bool_(),
        pa.int8(),
        pa.int16(),
        pa.int32(),
        pa.int64(),
        pa.float32(),
        pa.float64(),
        pa.string(),
        pa.binary(),
        pa.date32(),
        pa.timestamp("us"),
        pa.timestamp("us", tz="UTC"),
    }
)


def storable_problem(t: pa.DataType) -> str | None:
    """Why a column of type `t` cannot be declared, or None when it can."""
    if t in _SCALARS:
        return None
    if pa.types.is_decimal128(t):
        return None  # precision is at most 38 by construction
    if pa.types.is_list(t):
        return storable_problem(t.value_type)
    if pa.types.is_struct(t):
        for i in range(t.num_fields):
            problem = storable_problem(t.field(i).type)
            if problem:
                return problem
        return None
    return (
        f"type {t} is not stored alike by Delta Lake and Spark; declare one of bool, int8-64, "
        "float32/64, decimal128(p<=38,s), string, binary, date32, timestamp('us') or "
        "timestamp('us', tz='UTC'), or a list/struct of them"
    )


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _is_bytes(t: pa.DataType) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t))


def _lossless(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether a safe cast from `source` to `target` keeps every value it does not refuse."""
    t = pa.types
    if t.is_null(source):
        return True
    if _is_text(source) or _is_bytes(source):
        return _is_text(source) == _is_text(target) and (_is_text(target) or _is_bytes(target))
    if t.is_integer(source):
        return bool(t.is_integer(target) or t.is_decimal(target))
    if t.is_decimal(source):
        return bool(t.is_decimal(target))
    if t.is_floating(source):
        return bool(t.is_floating(target) and source.bit_width <= target.bit_width)
    if t.is_timestamp(source) and t.is_timestamp(target):
        # An instant may change its zone label, never gain or lose being an instant.
        return (source.tz is None) == (target.tz is None)
    return False


def conform(array: pa.Array, target: pa.DataType) -> pa.Array:
    """`array` as `target`: as is, or through a safe cast; TypeError or ArrowInvalid if not."""
    if array.type == target:
        return array
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
        if array.type == target:
            return array
    if not _lossless(array.type, target):
        raise TypeError(
            f"returned {array.type}, declared {target}; only lossless casts are applied, "
            "return the declared type"
        )
    if pa.types.is_integer(array.type) and pa.types.is_decimal(target):
        # Arrow checks integer -> decimal by type (int64 needs 19 digits before the point),
        # decimal -> decimal value by value; go through the widest integer decimal.
        array = array.cast(pa.decimal128(20, 0))
    return array.cast(target, safe=True)
