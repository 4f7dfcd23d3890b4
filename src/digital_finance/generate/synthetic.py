"""Realistic synthetic input for demos, tests and benchmarks.

`generate` writes stock quotes and mutual-fund holdings as the contract's sources deliver
them: several NDJSON files, one gzip file, one pretty-printed JSON-array file and one file with
a byte-order mark and CRLF line ends; exact duplicates, late updates, stale replays and ties on
the event time; every accepted event-time form; a small share of records that break each rule
of the contract; blank lines and unknown fields. Because every record is made on purpose, the
generator knows the exact outcome: how many records bronze must hold, which quarantine reason
each bad record gets, how many rows silver and gold must have. That is written next to the data
as `expected.json`, and the pipeline's end-to-end tests assert against it.

Records are written as pre-formatted text (no `json.dumps` per record), so a million stock
records take a few seconds. Output is byte-for-byte deterministic for a seed.
"""

from __future__ import annotations

import bisect
import gzip
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import ClassVar, Final, Generic, TypeVar

from digital_finance.contract.schemas import FUNDS as FUNDS_SPEC
from digital_finance.contract.schemas import STOCKS as STOCKS_SPEC

STOCKS: Final = "stocks"
MUTUAL_FUNDS: Final = "mutual_funds"

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

# Files: below this many records a dataset is one plain NDJSON file.
_SPECIAL_FORMS_FROM: Final = 200
_PLAIN_FILE_RECORDS: Final = 200_000
_PROGRESS_STEP: Final = 100_000
_RING_SIZE: Final = 50_000  # updates, duplicates and ties refer to one of the latest keys

_US: Final = 1_000_000
_DAY_S: Final = 86_400
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_POW10: Final = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)
_T0_US: Final = 1_704_067_200 * _US  # 2024-01-01T00:00:00Z
_SPAN_US: Final = 182 * _DAY_S * _US

_MAX_INT64: Final = 2**63 - 1
_STOCK_ID_BASE: Final = 10_001
_BAD_STOCK_ID_BASE: Final = 7_000_000_000
_COMPANY_BASE: Final = 1_000_000
_UNKNOWN_COMPANY_BASE: Final = 990_000_000
_NUMERIC_FUND_BASE: Final = 4_000_000

_INVALID_JSON: Final = "invalid_json"
_INVALID_UTF8: Final = "invalid_utf8"
_NOT_AN_OBJECT: Final = "not_an_object"
_DUPLICATE_KEY: Final = "duplicate_key"
_ARRAY_UNSAFE: Final = frozenset({_INVALID_JSON, _INVALID_UTF8, _DUPLICATE_KEY})


@dataclass(frozen=True)
class GenerateReport:
    """What `generate` wrote and what the pipeline must make of it.

    `records` counts the non-empty records per dataset (bronze rows), `invalid` the records
    each quarantine reason must catch (the primary, first reason), `distinct_valid_keys` the
    silver rows per dataset. `gold_rows` is the size of `stock_fund_holdings` and
    `unmatched_holdings` the silver fund holdings whose company has no stock (the
    referential-integrity warnings). `blank_lines` counts the ignored empty or white-space
    lines per dataset.
    """

    files: tuple[Path, ...]
    records: dict[str, int]
    invalid: dict[str, dict[str, int]]
    distinct_valid_keys: dict[str, int]
    gold_rows: int = 0
    unmatched_holdings: int = 0
    blank_lines: dict[str, int] = field(default_factory=dict)
    seed: int = 0

    def to_json(self, root: Path | None = None) -> dict[str, object]:
        """The report as plain JSON data; file paths relative to `root` when given."""
        files = [(p.relative_to(root) if root is not None else p).as_posix() for p in self.files]
        return {
            "seed": self.seed,
            "files": files,
            "records": dict(self.records),
            "invalid": {k: dict(v) for k, v in self.invalid.items()},
            "quarantine": {k: sum(v.values()) for k, v in self.invalid.items()},
            "distinct_valid_keys": dict(self.distinct_valid_keys),
            "gold_rows": self.gold_rows,
            "unmatched_holdings": self.unmatched_holdings,
            "blank_lines": dict(self.blank_lines),
        }


# --------------------------------------------------------------------------------------------
# Files


@dataclass(frozen=True)
class _FilePlan:
    name: str
    form: str  # plain | gzip | array | crlf_bom
    count: int
    final_newline: bool = True


def _plan_files(n: int) -> list[_FilePlan]:
    """Split n records into files; names sort in the order the records were made."""
    if n < _SPECIAL_FORMS_FROM:
        return [_FilePlan("part-00000.jsonl", "plain", n)]
    n_gzip = min(max(1, n * 8 // 100), 200_000)
    n_array = min(max(1, n * 2 // 100), 20_000)
    n_crlf = min(max(1, n * 4 // 100), 100_000)
    rest = n - n_gzip - n_array - n_crlf
    k = max(2, math.ceil(rest / _PLAIN_FILE_RECORDS))
    plain = [rest // k + (1 if i < rest % k else 0) for i in range(k)]
    forms: list[tuple[str, int]] = [
        ("plain", plain[0]),
        ("gzip", n_gzip),
        ("array", n_array),
        ("plain", plain[1]),
        ("crlf_bom", n_crlf),
        *(("plain", c) for c in plain[2:]),
    ]
    suffix = {"plain": "jsonl", "gzip": "ndjson.gz", "array": "json", "crlf_bom": "ndjson"}
    plans = [
        _FilePlan(f"part-{i:05d}.{suffix[form]}", form, count)
        for i, (form, count) in enumerate(forms)
    ]
    # The last plain file ends without a line end after its last record, as files cut by
    # hand or by a crashed writer do.
    last = max(i for i, plan in enumerate(plans) if plan.form == "plain")
    plans[last] = _FilePlan(plans[last].name, "plain", plans[last].count, final_newline=False)
    return plans


def _write_file(path: Path, plan: _FilePlan, lines: list[str]) -> None:
    if plan.form == "array":
        text = "[\n  " + ",\n  ".join(lines) + "\n]\n" if lines else "[]\n"
    elif plan.form == "crlf_bom":
        text = "\ufeff" + "\r\n".join(lines) + "\r\n"
    else:
        text = "\n".join(lines) + ("\n" if plan.final_newline and lines else "")
    # surrogateescape: the invalid_utf8 records carry their bad bytes as lone surrogates.
    data = text.encode("utf-8", "surrogateescape")
    with path.open("wb") as out:
        if plan.form == "gzip":
            with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=5) as gz:
                gz.write(data)
        else:
            out.write(data)


# --------------------------------------------------------------------------------------------
# Values


_OFFSETS: Final = (
    ("+05:30", 19_800),
    ("-05:00", -18_000),
    ("-04:00", -14_400),
    ("+01:00", 3_600),
    ("+02:00", 7_200),
    ("+09:00", 32_400),
    ("+00:00", 0),
    ("-07:00", -25_200),
    ("+05:45", 20_700),
    ("-03:30", -12_600),
    ("+10:00", 36_000),
)


class _Clock:
    """Writes an instant (microseconds since the epoch, UTC) in one of the accepted forms.

    `format` returns the JSON text and the instant the text really stands for (forms without
    fractional digits or with few of them truncate), so later updates stay strictly later.
    Naive forms are written in UTC, the contract's default source time zone.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rand = rng.random
        self._hms = [
            f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)
        ]
        self._dates: dict[int, str] = {}

    def _date(self, day: int) -> str:
        text = self._dates.get(day)
        if text is None:
            text = date.fromordinal(day + _EPOCH_ORDINAL).isoformat()
            self._dates[day] = text
        return text

    def _fraction(self, us: int) -> tuple[str, int]:
        digits = 1 + int(self._rand() * 6)
        unit = _POW10[6 - digits]
        frac = us // unit
        return f".{frac:0{digits}d}", frac * unit

    def format(self, t_us: int) -> tuple[str, int]:
        """JSON text of `t_us` in a random accepted form, and the instant it stands for."""
        rand = self._rand
        r = rand()
        sec, us = divmod(t_us, _US)
        whole = sec * _US
        if r < 0.30:  # 2024-03-15T14:30:00Z
            day, sod = divmod(sec, _DAY_S)
            return f'"{self._date(day)}T{self._hms[sod]}Z"', whole
        if r < 0.42:  # 2024-03-15T14:30:00.25Z
            day, sod = divmod(sec, _DAY_S)
            frac, frac_us = self._fraction(us)
            return f'"{self._date(day)}T{self._hms[sod]}{frac}Z"', whole + frac_us
        if r < 0.52:  # 2024-03-15T20:00:00.250+05:30
            offset, offset_s = _OFFSETS[int(rand() * len(_OFFSETS))]
            day, sod = divmod(sec + offset_s, _DAY_S)
            if rand() < 0.5:
                return f'"{self._date(day)}T{self._hms[sod]}{offset}"', whole
            frac, frac_us = self._fraction(us)
            return f'"{self._date(day)}T{self._hms[sod]}{frac}{offset}"', whole + frac_us
        if r < 0.60:  # 2024-03-15 14:30:00[.fff] (local time of the source, UTC by default)
            day, sod = divmod(sec, _DAY_S)
            if rand() < 0.5:
                return f'"{self._date(day)} {self._hms[sod]}"', whole
            frac, frac_us = self._fraction(us)
            return f'"{self._date(day)} {self._hms[sod]}{frac}"', whole + frac_us
        if r < 0.65:  # 2024-03-15T14:30:00.123456
            day, sod = divmod(sec, _DAY_S)
            return f'"{self._date(day)}T{self._hms[sod]}.{us:06d}"', t_us
        if r < 0.75:  # epoch seconds
            return str(sec), whole
        if r < 0.80:
            return f'"{sec}"', whole
        if r < 0.92:  # epoch milliseconds
            ms = t_us // 1_000
            return str(ms), ms * 1_000
        if r < 0.97:
            ms = t_us // 1_000
            return f'"{ms}"', ms * 1_000
        day, sod = divmod(sec, _DAY_S)
        d, hms = self._date(day), self._hms[sod]
        r = rand()
        if r < 0.25:
            return f'"{d}t{hms}z"', whole
        if r < 0.50:
            return f'"{d} {hms}Z"', whole
        if r < 0.75:
            return f'"  {d}T{hms}Z "', whole
        return f'"{d}T{hms}-00:00"', whole

    def same_instant(self, t_eff: int, text: str) -> str:
        """Another text for exactly the instant `t_eff` (which `text` stands for)."""
        if t_eff % _US == 0 and self._rand() < 0.5:
            sec = t_eff // _US
            day, sod = divmod(sec, _DAY_S)
            return str(sec) if self._rand() < 0.5 else f'"{self._date(day)}T{self._hms[sod]}Z"'
        return text


def _price(rand: Callable[[], float]) -> str:
    """A positive decimal price in the many shapes feeds send."""
    r = rand()
    cents = int(math.exp(rand() * 7.6) * 100)  # 1.00 .. ~2000.00, log-uniform
    if r < 0.60:
        return f"{cents // 100}.{cents % 100:02d}"
    if r < 0.70:
        v = 1 + int(rand() * 99_999)
        return f"{v // 10_000}.{v % 10_000:04d}"
    if r < 0.78:
        v = 1 + int(rand() * 999_999_999)
        return f"{v // _US}.{v % _US:06d}"
    if r < 0.84:
        v = 1_000 + int(rand() * 999_000)
        return f"{v // 1_000}.{v % 1_000:03d}"
    if r < 0.88:
        return f'"{cents // 100}.{cents % 100:02d}"'
    if r < 0.89:
        return f'" {cents // 100}.{cents % 100:02d} "'
    if r < 0.92:
        digits = str(cents)
        exponent = len(digits) - 3
        mark = "e" if rand() < 0.7 else "E+"
        return f"{digits[0]}.{digits[1:]}{mark}{exponent}"
    if r < 0.95:
        return str(max(1, cents // 100))
    if r < 0.97:
        return f"{cents // 100}.{cents % 100:02d}00000"
    if r < 0.985:
        return f"{600_000 + cents}.{cents % 100:02d}"
    if r < 0.995:
        return f'"{cents}e-2"'
    return _EXTREME_PRICES[int(rand() * len(_EXTREME_PRICES))]


_EXTREME_PRICES: Final = (
    "999999999999.999999",
    "0.000001",
    "123456789012.123456",
    "999999999999.99",
    "0.01",
    "1.5e-3",
    "0.000100",
    '"00012.50"',
    '"999999999999.999999"',
    "12345678901234e-6",
)


def _volume(rand: Callable[[], float]) -> str | None:
    r = rand()
    if r < 0.05:
        return None
    if r < 0.06:
        return "null"
    v = int(math.exp(rand() * 16))
    if r < 0.08:
        return f'"{v}"'
    if r < 0.085:
        return "0"
    return str(v)


def _decimal(rand: Callable[[], float], low: int, high: int, scale: int) -> str:
    """A decimal text between low and high (in units of 10**-scale), at the given scale."""
    v = low + int(rand() * (high - low))
    unit = _POW10[scale]
    return f"{v // unit}.{v % unit:0{scale}d}"


_LETTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# (exchange JSON text, currency, upper bound of the cumulative share)
_EXCHANGES: Final = (
    ('"NASDAQ"', "USD", 0.45),
    ('"NYSE"', "USD", 0.78),
    ('"NYSE Arca"', "USD", 0.82),
    ('"XETRA"', "EUR", 0.87),
    ('"Börse Frankfurt"', "EUR", 0.90),
    ('"B\\u00f6rse Stuttgart"', "EUR", 0.92),
    ('"LSE"', "GBP", 0.945),
    ('"Euronext Paris"', "EUR", 0.96),
    ('"SIX Swiss Exchange"', "CHF", 0.97),
    ('"東京証券取引所"', "JPY", 0.985),
    ('"TSX"', "CAD", 1.01),
)

_EXCHANGE_UPTO: Final = tuple(upto for _, _, upto in _EXCHANGES)

_FUND_HOUSES: Final = (
    "Vanguard",
    "Fidelity",
    "BlackRock",
    "Schwab",
    "T. Rowe Price",
    "DWS",
    "Amundi",
    "Allianz GI",
    "Union Investment",
    "Nomura",
    "Société Générale",
    "Deka",
    "\\u00c9pargne Solidaire",
    "野村アセット",
    "Investors' Choice",
)
_FUND_STRATEGIES: Final = (
    "Total Market",
    "500 Index",
    "Growth",
    "Value",
    "Global Equity",
    "Emerging Markets",
    "Dividend",
    "Small Cap",
    "Technology",
    "ESG Leaders",
    "Europa Aktien",
    "Actions Européennes",
    "グローバル株式",
    "Balanced",
)
_FUND_SUFFIXES: Final = ("Fund", "Index Fund Admiral", "ETF", "Fonds", "Portfolio", "Trust", "")

_STOCK_EXTRAS: Final = (
    ('"source": "feed-a"',),
    ('"source": "feed-b"', '"sequence": 18446744'),
    ('"bid": 12.34', '"ask": 12.36'),
    ('"meta": {"replayed": false, "tags": ["eod", "consolidated"]}',),
    ('"note": "ex-dividend"',),
    ('"isin": "US0378331005"', '"mic": "XNAS"'),
    ('"halted": null',),
)
_FUND_EXTRAS: Final = (
    ('"currency": "USD"',),
    ('"share_class": "Admiral"',),
    ('"source": "morningstar"', '"rank": 3'),
    ('"custodian": {"name": "State Street", "country": "US"}',),
    ('"sector": "Information Technology"',),
)

_GARBAGE_LINES: Final = (
    "<html><body><h1>502 Bad Gateway</h1></body></html>",
    "ERROR upstream timeout after 30000 ms",
    '{stock_id: 1001, "price": 12.5}',
    '{"stock_id": 1001} {"stock_id": 1002}',
    "// heartbeat",
    "NaN",
    "Infinity",
    "{",
    '{"a": 1,}',
    "}{",
)
_NOT_OBJECTS: Final = (
    "[1, 2, 3]",
    '"just a string"',
    "42",
    "null",
    "true",
    '[{"stock_id": 1001, "price": 1.5}]',
    "3.14",
    "[]",
)

_BAD_INTEGERS: Final = (
    "12.0",
    "-5",
    "0",
    '"12a"',
    "true",
    "1e3",
    "9223372036854775808",
    '""',
    '" 12"',
    "[1]",
    "12.5",
    '"+12"',
    '"-12"',
    '"\uff11\uff12"',  # full-width digits one and two
)
_BAD_TIMES: Final = (
    '"2024-02-30T10:00:00Z"',
    '"2023-02-29 10:00:00"',
    '"2024-13-01T00:00:00Z"',
    '"2024-04-31T12:00:00+02:00"',
    '"not a date"',
    "true",
    '{"ts": 1710513000}',
    '"2024-03-15T24:00:00Z"',
    '"2024-03-15T14:30:00.1234567Z"',
    "1710513000.5",
    "-5",
    '"2024-03-15T14:30:60Z"',
    '"15/03/2024 14:30"',
    '"2024-03-15"',
    '"2024-03-15T14:30Z"',
    '"2024-03-15T14:30:00+24:00"',
    '""',
    '"1710513000.5"',
    '"-1710513000"',
    "253402300800000",
    '"2024-3-5T14:30:00Z"',
    '"2024-03-15T14:30:00.Z"',
    '"2024-03-15T14:30:00+0530"',
    "1.7105130e9",
)
_BAD_DECIMALS: Final = (
    "0",
    "-1.5",
    '"abc"',
    "1.0000001",
    "1e-7",
    "1000000000000",
    "true",
    '"1,5"',
    '"NaN"',
    '"0.0"',
    '"12.5 USD"',
    "-0",
    '""',
    "{}",
    '"1e12"',
    "0.0000001",
)


# --------------------------------------------------------------------------------------------
# Records


def _render(parts: list[str] | str, pretty: bool) -> str:
    if isinstance(parts, str):
        return parts
    if pretty:
        return "{\n    " + ",\n    ".join(parts) + "\n  }"
    return "{" + ", ".join(parts) + "}"


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


class _Maker(Generic[_K]):
    """Makes the records of one dataset in order and keeps the expected outcome.

    Subclasses make base records (new keys), updates, ties and stale replays of one of the
    latest keys (kept in a ring), and records that break one rule (or several, the first of
    which is the quarantine reason).
    """

    fields: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[frozenset[str]] = frozenset()
    bad_values: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, rng: random.Random, clock: _Clock) -> None:
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

    def base(self) -> list[str]:
        raise NotImplementedError

    def update(self, entry: _K) -> list[str]:
        raise NotImplementedError

    def tie(self, entry: _K) -> list[str]:
        raise NotImplementedError

    def stale(self, entry: _K) -> list[str]:
        raise NotImplementedError

    def valid_values(self) -> dict[str, str]:
        """A valid record as field -> JSON text, to be broken by `invalid`."""
        raise NotImplementedError


class _Stocks(_Maker[_StockKey]):
    fields: ClassVar[tuple[str, ...]] = STOCKS_SPEC.field_names
    required: ClassVar[frozenset[str]] = frozenset(f.name for f in STOCKS_SPEC.fields if f.required)
    bad_values: ClassVar[dict[str, tuple[str, ...]]] = {
        "stock_id": _BAD_INTEGERS,
        "company_id": _BAD_INTEGERS,
        "symbol": (
            '""',
            '"   "',
            '"TOOLONGSYMBOL1"',
            '"AB$C"',
            "123",
            '"ÄPFEL"',
            '"BRK B"',
            '["AAPL"]',
            "true",
        ),
        "price": _BAD_DECIMALS,
        "volume": ("-1", "1.5", '"ten"', "true", "1e3", '"-5"', '"1,000"', "9223372036854775808"),
        "exchange": ("123", "true", '["NYSE"]', '{"name": "NYSE"}'),
        "currency": ('"US"', '"USDX"', '"U$D"', "840", '""', '"€UR"', '"ÉUR"'),
        "timestamp": _BAD_TIMES,
    }

    def __init__(self, rng: random.Random, clock: _Clock) -> None:
        super().__init__(rng, clock)
        self.listings = bytearray()  # per company index: its number of listings
        self.open_company = False  # the latest company has one listing and may get a second
        self.company: tuple[str, str, str] = ("", "", "")  # symbol, exchange text, currency
        self.bad_ids = 0

    def _new_company(self) -> tuple[int, str, str, str]:
        rand = self.rand
        r = rand()
        length = 1 if r < 0.03 else 2 if r < 0.15 else 3 if r < 0.55 else 4 if r < 0.95 else 5
        symbol = "".join(self.rng.choices(_LETTERS, k=length))
        exchange, currency, _ = _EXCHANGES[bisect.bisect(_EXCHANGE_UPTO, rand())]
        index = len(self.listings)
        self.listings.append(1)
        self.company = (symbol, exchange, currency)
        return index, symbol, exchange, currency

    def _currency(self, currency: str) -> str | None:
        r = self.rand()
        if currency == "USD":
            return None if r < 0.10 else '"usd"' if r < 0.12 else '"USD"'
        if currency == "EUR" and r < 0.30:
            return '"eur"' if r < 0.27 else '" EUR "'
        return f'"{currency}"'

    def _parts(
        self, sid: int, cid: int, symbol: str, exchange: str | None, currency: str | None, ts: str
    ) -> list[str]:
        rand = self.rand
        r = rand()
        sid_t = str(sid) if r >= 0.05 else f'"{sid}"' if r < 0.04 else f'"00{sid}"'
        cid_t = str(cid) if rand() >= 0.03 else f'"{cid}"'
        r = rand()
        sym_t = (
            f'"{symbol}"' if r >= 0.03 else f'"{symbol.lower()}"' if r < 0.02 else f'" {symbol} "'
        )
        parts = [
            f'"stock_id": {sid_t}',
            f'"company_id": {cid_t}',
            f'"symbol": {sym_t}',
            f'"price": {_price(rand)}',
        ]
        volume = _volume(rand)
        if volume is not None:
            parts.append(f'"volume": {volume}')
        if exchange is not None:
            parts.append(f'"exchange": {exchange}')
        if currency is not None:
            parts.append(f'"currency": {currency}')
        parts.append(f'"timestamp": {ts}')
        return self.finish(parts, _STOCK_EXTRAS)

    def base(self) -> list[str]:
        rand = self.rand
        index = self.base_count
        self.base_count += 1
        sid = _MAX_INT64 if index == 7 else _STOCK_ID_BASE + index
        if self.open_company and rand() < 0.45:
            company = len(self.listings) - 1
            self.listings[company] = 2
            self.open_company = False
            first, exchange, currency = self.company
            symbol = first + (".B" if rand() < 0.8 else "-P")
        else:
            company, symbol, exchange, currency = self._new_company()
            self.open_company = True
        cid = _COMPANY_BASE + company
        r = rand()
        exch_t = exchange if r >= 0.04 else None if r < 0.03 else "null"
        cur_t = self._currency(currency)
        ts, t_eff = self.clock.format(_T0_US + int(rand() * _SPAN_US))
        parts = self._parts(sid, cid, symbol, exch_t, cur_t, ts)
        self.remember(_StockKey(sid, cid, symbol, exch_t, cur_t, t_eff, ts, parts))
        return parts

    def _again(self, key: _StockKey, ts: str, t_eff: int) -> list[str]:
        parts = self._parts(key.sid, key.cid, key.symbol, key.exchange, key.currency, ts)
        if t_eff >= key.t_us:  # the new latest record of the key (a tie wins: it came later)
            key.t_us, key.ts, key.parts = t_eff, ts, parts
        return parts

    def update(self, entry: _StockKey) -> list[str]:
        later = entry.t_us + int((60 + self.rand() * 30 * _DAY_S) * _US)
        return self._again(entry, *self.clock.format(later))

    def tie(self, entry: _StockKey) -> list[str]:
        return self._again(entry, self.clock.same_instant(entry.t_us, entry.ts), entry.t_us)

    def stale(self, entry: _StockKey) -> list[str]:
        earlier = entry.t_us - int((3_600 + self.rand() * 10 * _DAY_S) * _US)
        return self._again(entry, *self.clock.format(earlier))

    def valid_values(self) -> dict[str, str]:
        rand = self.rand
        if self.ring and rand() < 0.5:
            entry = self.pick()
            sid, cid, symbol = entry.sid, entry.cid, entry.symbol
        else:
            self.bad_ids += 1
            sid, cid = _BAD_STOCK_ID_BASE + self.bad_ids, _COMPANY_BASE + self.bad_ids
            symbol = "".join(_LETTERS[int(rand() * 26)] for _ in range(3))
        ts, _ = self.clock.format(_T0_US + int(rand() * _SPAN_US))
        values = {
            "stock_id": str(sid),
            "company_id": str(cid),
            "symbol": f'"{symbol}"',
            "price": _price(rand),
            "volume": str(int(math.exp(rand() * 16))),
            "exchange": '"NYSE"',
            "currency": '"USD"',
            "timestamp": ts,
        }
        if rand() < 0.3:
            del values["volume"]
        return values


class _Funds(_Maker[_FundKey]):
    fields: ClassVar[tuple[str, ...]] = FUNDS_SPEC.field_names
    required: ClassVar[frozenset[str]] = frozenset(f.name for f in FUNDS_SPEC.fields if f.required)
    bad_values: ClassVar[dict[str, tuple[str, ...]]] = {
        "fund_id": ('""', '"   "', "true", "12.5", '["VFIAX"]', '{"id": "VFIAX"}', "1e3", "12.0"),
        "fund_name": ("42", "true", '["Growth Fund"]', '{"en": "Growth Fund"}'),
        "company_id": _BAD_INTEGERS,
        "holding_weight": (
            "0",
            "-1",
            "100.000001",
            "150",
            '"abc"',
            "1e-7",
            "true",
            "0.0000001",
            '"101"',
            '"0"',
            "100.0000001",
            "1e3",
        ),
        "nav": _BAD_DECIMALS,
        "as_of": _BAD_TIMES,
    }

    def __init__(self, rng: random.Random, clock: _Clock, listings: bytearray) -> None:
        super().__init__(rng, clock)
        self.listings = listings
        self.n_companies = len(listings)
        self.queue: list[int] = []
        self.funds = 0
        self.unknown = 0
        self.gold_rows = 0
        self.unmatched = 0
        self.bad_ids = 0
        self.fund: tuple[str, bool, str, str, int, int] = ("", False, "", "", 0, 0)
        # month ends from 2023-01 to 2035-12, as days since the epoch
        ends = []
        for year in range(2023, 2036):
            for month in range(1, 13):
                nxt = date(year + (month == 12), month % 12 + 1, 1)
                ends.append(nxt.toordinal() - 1 - _EPOCH_ORDINAL)
        self.month_ends = ends

    def _instant(self, month: int, tod: int) -> int:
        return (self.month_ends[month] * _DAY_S + tod) * _US

    def _next_fund(self) -> None:
        rand, rng = self.rand, self.rng
        index = self.funds
        self.funds += 1
        numeric = rand() < 0.15
        if numeric:
            fid = str(_NUMERIC_FUND_BASE + index)
        elif index < 26**4:
            code = index * 7_919 % 26**4
            letters = []
            for _ in range(4):
                code, digit = divmod(code, 26)
                letters.append(_LETTERS[digit])
            fid = "".join(letters) + "X"
        else:
            fid = f"MF{index:08d}"
        house = _FUND_HOUSES[int(rand() * len(_FUND_HOUSES))]
        strategy = _FUND_STRATEGIES[int(rand() * len(_FUND_STRATEGIES))]
        suffix = _FUND_SUFFIXES[int(rand() * len(_FUND_SUFFIXES))]
        name = f'"{house} {strategy} {suffix}"' if suffix else f'"{house} {strategy}"'
        nav = (
            _decimal(rand, 1_000, 60_000, 2)
            if rand() < 0.8
            else _decimal(rand, 100_000, 6_000_000, 4)
        )
        month = 6 + int(rand() * 12)
        tod = (0, 16 * 3_600, 20 * 3_600 + 30 * 60, _DAY_S - 1)[int(rand() * 4)]
        self.fund = (fid, numeric, name, nav, month, tod)
        holdings = 10 + int(rand() * 51)
        if self.n_companies:
            picked = rng.sample(range(self.n_companies), min(holdings, self.n_companies))
            queue = [_COMPANY_BASE + c for c in picked]
        else:
            queue = [0] * holdings
        for i, cid in enumerate(queue):
            if cid == 0 or rand() < 0.01:
                self.unknown += 1
                queue[i] = _UNKNOWN_COMPANY_BASE + self.unknown
        queue.reverse()
        self.queue = queue

    def _weight(self) -> str:
        rand = self.rand
        r = rand()
        if r < 0.55:
            return _decimal(rand, 1, 1_000, 2)
        if r < 0.80:
            return _decimal(rand, 1, 100_000, 4)
        if r < 0.90:
            return _decimal(rand, 1, 10_000_000, 6)
        if r < 0.97:
            return f'"{_decimal(rand, 1, 1_000, 2)}"'
        if r < 0.985:
            return f"{1 + int(rand() * 999)}e-3"
        return ("100", "100.000000", "1e2", "0.000001", '" 0.5 "', "5")[int(rand() * 6)]

    def _parts(self, fid: str, numeric: bool, name: str, cid: int, nav: str, ts: str) -> list[str]:
        rand = self.rand
        r = rand()
        if numeric:
            fid_t = fid if r < 0.5 else f'"{fid}"'
        else:
            fid_t = f'"{fid}"' if r >= 0.03 else f'" {fid} "'
        parts = [f'"fund_id": {fid_t}']
        if rand() >= 0.05:
            parts.append(f'"fund_name": {name}')
        cid_t = str(cid) if rand() >= 0.03 else f'"{cid}"'
        parts.append(f'"company_id": {cid_t}')
        parts.append(f'"holding_weight": {self._weight()}')
        parts.append(f'"nav": {nav if rand() >= 0.05 else _price(rand)}')
        parts.append(f'"as_of": {ts}')
        return self.finish(parts, _FUND_EXTRAS)

    def base(self) -> list[str]:
        if not self.queue:
            self._next_fund()
        cid = self.queue.pop()
        self.base_count += 1
        if cid >= _UNKNOWN_COMPANY_BASE:
            self.unmatched += 1
        else:
            self.gold_rows += self.listings[cid - _COMPANY_BASE]
        fid, numeric, name, nav, month, tod = self.fund
        ts, t_eff = self.clock.format(self._instant(month, tod))
        parts = self._parts(fid, numeric, name, cid, nav, ts)
        self.remember(_FundKey(fid, numeric, name, cid, t_eff, ts, parts, month, tod, nav))
        return parts

    def _again(self, key: _FundKey, month: int | None) -> list[str]:
        nav = key.nav
        if month is None:  # a tie: the same instant, other values
            ts, t_eff = self.clock.same_instant(key.t_us, key.ts), key.t_us
        else:
            if 0 <= month < len(self.month_ends):
                t_us = self._instant(month, key.tod)
                if month > key.month:
                    nav = _decimal(self.rand, 1_000, 60_000, 2)
            else:  # beyond the calendar kept: a month's worth later or earlier
                t_us = key.t_us + (31 if month > key.month else -31) * _DAY_S * _US
                month = key.month
            ts, t_eff = self.clock.format(t_us)
        parts = self._parts(key.fid, key.numeric, key.name, key.cid, nav, ts)
        if t_eff >= key.t_us:  # the new latest record of the key (a tie wins: it came later)
            key.t_us, key.ts, key.parts, key.nav = t_eff, ts, parts, nav
            if month is not None:
                key.month = month
        return parts

    def update(self, entry: _FundKey) -> list[str]:
        return self._again(entry, entry.month + 1 + int(self.rand() * 3))

    def tie(self, entry: _FundKey) -> list[str]:
        return self._again(entry, None)

    def stale(self, entry: _FundKey) -> list[str]:
        return self._again(entry, entry.month - 1 - int(self.rand() * 3))

    def valid_values(self) -> dict[str, str]:
        rand = self.rand
        if self.ring and rand() < 0.5:
            entry = self.pick()
            fid, cid = entry.fid, entry.cid
        else:
            self.bad_ids += 1
            fid, cid = f"ZZ{self.bad_ids:06d}", _COMPANY_BASE + self.bad_ids
        ts, _ = self.clock.format(_T0_US + int(rand() * _SPAN_US))
        return {
            "fund_id": f'"{fid}"',
            "fund_name": '"Vanguard Growth Fund"',
            "company_id": str(cid),
            "holding_weight": _decimal(rand, 1, 1_000, 2),
            "nav": _decimal(rand, 1_000, 60_000, 2),
            "as_of": ts,
        }


# --------------------------------------------------------------------------------------------
# Writing a dataset


@dataclass
class _Written:
    files: list[Path]
    blank_lines: int


_BLANKS: Final = ("", "   ", "\t", " ")


def _write_dataset(
    maker: _Maker[_K],
    directory: Path,
    n: int,
    rng: random.Random,
    progress: Callable[[int], None],
) -> _Written:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("part-*"):
        stale.unlink()
    files: list[Path] = []
    blank_lines = 0
    rand = maker.rand
    record = maker.record
    for plan in _plan_files(n):
        array = plan.form == "array"
        blanks: set[int] = set()
        if not array and plan.count > 1:
            k = min(plan.count - 1, 1 + plan.count // 40_000)
            blanks = set(rng.sample(range(1, plan.count), k))
        blank_lines += len(blanks)
        lines: list[str] = []
        append = lines.append
        done = 0
        while done < plan.count:
            stop = min(plan.count, done + _PROGRESS_STEP)
            for j in range(done, stop):
                if blanks and j in blanks:
                    append(_BLANKS[j % len(_BLANKS)])
                # The first line of an NDJSON file is a good record, so that a file can never
                # be mistaken for a JSON array by its first character.
                parts = record(rand() if j or array else 1.0, array)
                if isinstance(parts, str):
                    append(parts)
                elif array:
                    append("{\n    " + ",\n    ".join(parts) + "\n  }")
                else:
                    append("{" + ", ".join(parts) + "}")
            progress(stop - done)
            done = stop
        path = directory / plan.name
        _write_file(path, plan, lines)
        files.append(path)
    return _Written(files, blank_lines)


def generate(
    out_dir: Path,
    n_stocks: int,
    n_funds: int,
    seed: int = 42,
    on_progress: Callable[[int], None] | None = None,
) -> GenerateReport:
    """Write `n_stocks` stock records and `n_funds` fund-holding records under `out_dir`.

    Files go to `out_dir/stocks/` and `out_dir/mutual_funds/` (files named `part-*` left there
    by an earlier run are removed first), and the report to `out_dir/expected.json`. The same
    arguments always write the same bytes. `on_progress` is called with the number of records
    written so far, about every 100,000 records and once at the end.
    """
    if n_stocks < 0 or n_funds < 0:
        raise ValueError("record counts must not be negative")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written_so_far = 0

    def progress(step: int) -> None:
        nonlocal written_so_far
        written_so_far += step
        if on_progress is not None:
            on_progress(written_so_far)

    # Not for security: a seeded generator is the point, the output must repeat.
    rng = random.Random(f"digital-finance/{seed}/stocks")  # noqa: S311
    stocks = _Stocks(rng, _Clock(rng))
    stock_files = _write_dataset(stocks, out_dir / STOCKS, n_stocks, rng, progress)

    rng = random.Random(f"digital-finance/{seed}/funds")  # noqa: S311
    funds = _Funds(rng, _Clock(rng), stocks.listings)
    fund_files = _write_dataset(funds, out_dir / MUTUAL_FUNDS, n_funds, rng, progress)

    report = GenerateReport(
        files=tuple(stock_files.files + fund_files.files),
        records={STOCKS: n_stocks, MUTUAL_FUNDS: n_funds},
        invalid={
            STOCKS: dict(sorted(stocks.invalid_counts.items())),
            MUTUAL_FUNDS: dict(sorted(funds.invalid_counts.items())),
        },
        distinct_valid_keys={STOCKS: stocks.base_count, MUTUAL_FUNDS: funds.base_count},
        gold_rows=funds.gold_rows,
        unmatched_holdings=funds.unmatched,
        blank_lines={STOCKS: stock_files.blank_lines, MUTUAL_FUNDS: fund_files.blank_lines},
        seed=seed,
    )
    expected = json.dumps(report.to_json(out_dir), indent=2, ensure_ascii=False)
    (out_dir / "expected.json").write_text(expected + "\n", encoding="utf-8")
    if on_progress is not None and written_so_far == 0:
        on_progress(0)
    return report
