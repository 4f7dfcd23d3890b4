"""Event times for synthetic records, in every form the contract accepts.

Instants are microseconds since the epoch, UTC, within the half year the data covers.
`_Clock` writes an instant as ISO-8601 text with or without fraction and offset, as a naive
local time, or as epoch seconds or milliseconds (as JSON numbers or strings), and reports the
instant the text really stands for.
"""

from __future__ import annotations

import random
from datetime import date
from typing import Final

_US: Final = 1_000_000  # microseconds in a second
_DAY_S: Final = 86_400  # seconds in a day
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_POW10: Final = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)
# The half year the base event times are drawn from.
_T0_US: Final = 1_704_067_200 * _US  # 2024-01-01T00:00:00Z
_SPAN_US: Final = 182 * _DAY_S * _US

# Offsets of the offset forms: (text, seconds east of UTC).

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
