"""Stock quote records: listings of companies on exchanges, with prices and volumes.

`_Stocks` makes the stock records and remembers how many listings each company has (one, or
two for a company with a second share class), which the fund holdings need to know the size
of the gold join.
"""

from __future__ import annotations

import bisect
import math
import random
from typing import ClassVar, Final

from digital_finance.contract.schemas import MAX_INT64
from digital_finance.contract.schemas import STOCKS as STOCKS_SPEC
from digital_finance.generate.clock import _DAY_S, _SPAN_US, _T0_US, _US, _Clock
from digital_finance.generate.records import _COMPANY_BASE, _Maker, _StockKey
from digital_finance.generate.values import (
    _BAD_DECIMALS,
    _BAD_INTEGERS,
    _BAD_TIMES,
    _EXCHANGE_UPTO,
    _EXCHANGES,
    _LETTERS,
    _STOCK_EXTRAS,
    _price,
    _volume,
)

_STOCK_ID_BASE: Final = 10_001
# Ids of the invalid records that do not reuse a valid key, far from every valid id.
_BAD_STOCK_ID_BASE: Final = 7_000_000_000


class _Stocks(_Maker[_StockKey]):
    """Makes the stock records; `listings` tells the fund maker how often a company trades."""

    spec = STOCKS_SPEC
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
        # one stock gets the largest id, the edge of the contract's integer range
        sid = MAX_INT64 if index == 7 else _STOCK_ID_BASE + index
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
