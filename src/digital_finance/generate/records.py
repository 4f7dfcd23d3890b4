"""The base of the record makers: the kinds of record, the ring of recent keys, bad records.

`_Maker` makes the records of one dataset in order and counts the expected outcome: new keys
("base" records), exact duplicates, updates, ties and stale replays of one of the latest
keys, and records that break a rule of the contract. What a record of a dataset looks like is
left to its subclass (`_Stocks`, `_Funds`); the latest state of each key is kept in
`_StockKey` and `_FundKey`.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Final, Generic, TypeVar

from digital_finance.contract.schemas import DatasetSpec
from digital_finance.generate.clock import _Clock
from digital_finance.generate.plan import _render
from digital_finance.generate.values import _GARBAGE_LINES, _NOT_OBJECTS

# Share of records of each kind; the rest are new keys ("base" records).
_P_INVALID: Final = 0.01  # breaks a rule of the contract
_P_DUPLICATE: Final = 0.10  # the exact text of an earlier record again
_P_UPDATE: Final = 0.10  # an existing key with a later event time and new values
_P_TIE: Final = 0.005  # an existing key at its latest event time with other values
_P_STALE: Final = 0.015  # an existing key with an earlier event time (arrives late, loses)
_C_INVALID: Final = _P_INVALID
_C_DUPLICATE: Final = _C_INVALID + _P_DUPLICATE
_C_UPDATE: Final = _C_DUPLICATE + _P_UPDATE
_C_TIE: Final = _C_UPDATE + _P_TIE
_C_STALE: Final = _C_TIE + _P_STALE

_RING_SIZE: Final = 50_000  # updates, duplicates and ties refer to one of the latest keys

# Company ids, shared by the stocks and the fund holdings that refer to them.
_COMPANY_BASE: Final = 1_000_000

# The whole-record quarantine reasons. The other reasons are named after the fields.
_INVALID_JSON: Final = "invalid_json"
_INVALID_UTF8: Final = "invalid_utf8"
_NOT_AN_OBJECT: Final = "not_an_object"
_DUPLICATE_KEY: Final = "duplicate_key"
# Records that cannot stand as one element of a JSON array file: they would spoil the whole
# file, not just themselves.
_ARRAY_UNSAFE: Final = frozenset({_INVALID_JSON, _INVALID_UTF8, _DUPLICATE_KEY})


@dataclass(slots=True)
class _StockKey:
    """The latest state of one stock key, for updates, ties, stale replays and duplicates."""

    sid: int
    cid: int
    symbol: str
    exchange: str | None  # JSON text, None when the key's records leave it out
    currency: str | None
    t_us: int  # the latest event time of the key
    ts: str  # its JSON text
    parts: list[str]  # the latest record of the key


@dataclass(slots=True)
class _FundKey:
    """The latest state of one fund holding key (fund_id, company_id)."""

    fid: str
    numeric: bool
    name: str
    cid: int
    t_us: int
    ts: str
    parts: list[str]
    month: int  # index into the month ends of `_Funds`
    tod: int  # time of day of as_of, seconds
    nav: str


_K = TypeVar("_K", _StockKey, _FundKey)


class _Maker(ABC, Generic[_K]):
    """Makes the records of one dataset in order and keeps the expected outcome.

    Subclasses make base records (new keys), updates, ties and stale replays of one of the
    latest keys (kept in a ring), and records that break one rule (or several, the first of
    which is the quarantine reason).
    """

    spec: ClassVar[DatasetSpec]  # the contract dataset the records are made for
    bad_values: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, rng: random.Random, clock: _Clock) -> None:
        self.fields = self.spec.field_names
        self.required = frozenset(f.name for f in self.spec.fields if f.required)
        self.rng = rng
        self.rand = rng.random
        self.clock = clock
        self.ring: list[_K] = []
        self.ring_next = 0
        self.last: list[str] | None = None
        self.base_count = 0
        self.invalid_counts: dict[str, int] = {}
        reasons = [_INVALID_JSON, _INVALID_UTF8, _NOT_AN_OBJECT, _DUPLICATE_KEY]
        for name in self.fields:
            if name in self.required:
                reasons.append(f"missing_{name}")
            if name in self.bad_values:
                reasons.append(f"invalid_{name}")
        rng.shuffle(reasons)
        self.reasons = reasons
        self.reason_next = 0

    # --- the ring of recent keys

    def remember(self, entry: _K) -> None:
        if len(self.ring) < _RING_SIZE:
            self.ring.append(entry)
        else:
            self.ring[self.ring_next] = entry
            self.ring_next = (self.ring_next + 1) % _RING_SIZE

    def pick(self) -> _K:
        return self.ring[int(self.rand() * len(self.ring))]

    # --- one record

    def record(self, r: float, array_safe: bool) -> list[str] | str:
        """The next record: a list of `"key": value` parts, or raw text."""
        if r >= _C_STALE or not self.ring:
            if r < _C_INVALID:
                return self.invalid(array_safe)
            parts = self.base()
        elif r < _C_INVALID:
            return self.invalid(array_safe)
        elif r < _C_DUPLICATE:
            if self.last is not None and self.rand() < 0.3:
                return self.last
            return self.pick().parts
        elif r < _C_UPDATE:
            parts = self.update(self.pick())
        elif r < _C_TIE:
            parts = self.tie(self.pick())
        else:
            parts = self.stale(self.pick())
        self.last = parts
        return parts

    def finish(self, parts: list[str], extras: tuple[tuple[str, ...], ...]) -> list[str]:
        """Unknown fields now and then, and a different key order now and then."""
        r = self.rand()
        if r < 0.02:
            parts.extend(extras[int(self.rand() * len(extras))])
        elif r < 0.03:
            self.rng.shuffle(parts)
        return parts

    def invalid(self, array_safe: bool) -> list[str] | str:
        reasons = self.reasons
        reason = reasons[self.reason_next % len(reasons)]
        self.reason_next += 1
        while array_safe and reason in _ARRAY_UNSAFE:
            reason = reasons[self.reason_next % len(reasons)]
            self.reason_next += 1
        self.invalid_counts[reason] = self.invalid_counts.get(reason, 0) + 1
        values = self.valid_values()
        rand, rng = self.rand, self.rng
        if reason == _NOT_AN_OBJECT:
            return _NOT_OBJECTS[int(rand() * len(_NOT_OBJECTS))]
        if reason == _INVALID_JSON:
            text = _render([f'"{k}": {v}' for k, v in values.items()], False)
            r = rand()
            if r < 0.35:
                return text[: rng.randint(max(2, len(text) // 3), len(text) - 1)]
            if r < 0.45:
                return text[:-1] + ",}"
            if r < 0.55:
                return text.replace('"', "'")
            if r < 0.65:
                return text.replace(", ", " ", 1)
            if r < 0.75:
                key = self.fields[-3]
                values[key] = "NaN" if rand() < 0.5 else "-Infinity"
                return _render([f'"{k}": {v}' for k, v in values.items()], False)
            return _GARBAGE_LINES[int(rand() * len(_GARBAGE_LINES))]
        if reason == _INVALID_UTF8:
            text = _render([f'"{k}": {v}' for k, v in values.items()], False)
            # Latin-1 text where UTF-8 was promised: 0xE9 (é) and 0xF6 (ö) as raw bytes.
            note = '"caf\udce9"' if rand() < 0.5 else '"B\udcf6rse"'
            return text[:-1] + f', "note": {note}}}'
        if reason == _DUPLICATE_KEY:
            keys = list(values)
            key = keys[int(rand() * len(keys))]
            parts = [f'"{k}": {v}' for k, v in values.items()]
            parts.append(f'"{key}": {values[key]}')
            return parts
        kind, _, name = reason.partition("_")
        self.breaks(values, name, kind == "missing")
        if rand() < 0.25:
            later = self.fields[self.fields.index(name) + 1 :]
            if later:
                other = later[int(rand() * len(later))]
                if other in self.bad_values:
                    self.breaks(values, other, False)
                elif other in self.required:
                    self.breaks(values, other, True)
        return [f'"{k}": {v}' for k, v in values.items()]

    def breaks(self, values: dict[str, str], name: str, missing: bool) -> None:
        if missing:
            if self.rand() < 0.7:
                values.pop(name, None)
            else:
                values[name] = "null"
        else:
            bad = self.bad_values[name]
            values[name] = bad[int(self.rand() * len(bad))]

    # --- per dataset

    @abstractmethod
    def base(self) -> list[str]:
        """A record of a new key, remembered in the ring."""
        ...

    @abstractmethod
    def update(self, entry: _K) -> list[str]:
        """A record of `entry`'s key with a later event time and new values."""
        ...

    @abstractmethod
    def tie(self, entry: _K) -> list[str]:
        """A record of `entry`'s key at its latest event time, with other values."""
        ...

    @abstractmethod
    def stale(self, entry: _K) -> list[str]:
        """A record of `entry`'s key with an earlier event time: it arrives late and loses."""
        ...

    @abstractmethod
    def valid_values(self) -> dict[str, str]:
        """A valid record as field -> JSON text, to be broken by `invalid`."""
        ...
