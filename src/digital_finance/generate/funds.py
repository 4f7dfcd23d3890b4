"""Mutual-fund holding records: the companies each fund holds, with weight and NAV.

`_Funds` makes the holding records fund by fund, each fund holding companies drawn from the
stocks already made (and a few unknown ones), and counts the gold rows and the holdings whose
company has no stock.
"""

from __future__ import annotations

import random
from datetime import date
from typing import ClassVar, Final

from digital_finance.contract.schemas import FUNDS as FUNDS_SPEC
from digital_finance.generate.clock import _DAY_S, _EPOCH_ORDINAL, _SPAN_US, _T0_US, _US, _Clock
from digital_finance.generate.records import _COMPANY_BASE, _FundKey, _Maker
from digital_finance.generate.values import (
    _BAD_DECIMALS,
    _BAD_INTEGERS,
    _BAD_TIMES,
    _FUND_EXTRAS,
    _FUND_HOUSES,
    _FUND_STRATEGIES,
    _FUND_SUFFIXES,
    _LETTERS,
    _decimal,
    _price,
)

# Companies no stock lists: the holdings the referential-integrity check warns about.
_UNKNOWN_COMPANY_BASE: Final = 990_000_000
# Funds whose id is a number rather than a ticker-like code.
_NUMERIC_FUND_BASE: Final = 4_000_000


class _Funds(_Maker[_FundKey]):
    """Makes the fund holding records over the companies of the stocks made before."""

    spec = FUNDS_SPEC
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
