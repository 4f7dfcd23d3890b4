"""Field values for synthetic records: good values in their many shapes, and bad ones.

Prices, volumes and decimals come in the textual shapes feeds send (quoted, padded, with an
exponent, with trailing zeros). The pools hold the exchanges with their currencies, the fund
houses and strategies fund names are made of, the unknown fields records may carry, and the
bad values, garbage lines and non-object JSON that the invalid records are made of. Every
value is already JSON text, so records can be written without `json.dumps`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

from digital_finance.generate.clock import _POW10, _US


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
