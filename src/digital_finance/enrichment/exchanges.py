"""The built-in table of exchanges: names as they appear in feeds -> ISO 10383 MIC, IANA zone.

Names are matched after `normalize_names`, so the table lists each spelling once in any case.
Operating MICs are used (XNAS, not the segment XNGS), except where a feed names a segment
that trades in its own right (NYSE Arca, Xetra). Each MIC also matches itself.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

# (MIC, IANA time zone, names other than the MIC)
EXCHANGES: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    # Americas
    ("XNYS", "America/New_York", ("NYSE", "New York Stock Exchange")),
    (
        "XNAS",
        "America/New_York",
        ("NASDAQ", "Nasdaq Stock Market", "Nasdaq Global Select", "NasdaqGS", "NasdaqGM"),
    ),
    ("ARCX", "America/New_York", ("NYSE Arca", "NYSEArca")),
    ("XASE", "America/New_York", ("NYSE American", "NYSE MKT", "AMEX")),
    ("BATS", "America/New_York", ("Cboe BZX", "Cboe")),
    ("IEXG", "America/New_York", ("IEX",)),
    ("XTSE", "America/Toronto", ("TSX", "Toronto Stock Exchange")),
    ("XTSX", "America/Toronto", ("TSXV", "TSX Venture", "TSX Venture Exchange")),
    ("XMEX", "America/Mexico_City", ("BMV", "Bolsa Mexicana de Valores")),
    ("BVMF", "America/Sao_Paulo", ("B3", "BM&FBOVESPA", "Bovespa")),
    # Europe
    ("XLON", "Europe/London", ("LSE", "London Stock Exchange")),
    ("XETR", "Europe/Berlin", ("XETRA", "Deutsche Börse Xetra")),
    (
        "XFRA",
        "Europe/Berlin",
        (
            "Börse Frankfurt",
            "Boerse Frankfurt",
            "Borse Frankfurt",
            "Frankfurt Stock Exchange",
            "Frankfurter Wertpapierbörse",
            "FWB",
            "FSE",
        ),
    ),
    (
        "XSTU",
        "Europe/Berlin",
        ("Börse Stuttgart", "Boerse Stuttgart", "Borse Stuttgart", "Stuttgart Stock Exchange"),
    ),
    ("XPAR", "Europe/Paris", ("Euronext Paris", "Bourse de Paris")),
    ("XAMS", "Europe/Amsterdam", ("Euronext Amsterdam",)),
    ("XBRU", "Europe/Brussels", ("Euronext Brussels",)),
    ("XLIS", "Europe/Lisbon", ("Euronext Lisbon",)),
    ("XDUB", "Europe/Dublin", ("Euronext Dublin", "Irish Stock Exchange")),
    ("XMIL", "Europe/Rome", ("Borsa Italiana", "Euronext Milan")),
    ("XOSL", "Europe/Oslo", ("Oslo Børs", "Oslo Bors", "Euronext Oslo")),
    ("XMAD", "Europe/Madrid", ("BME", "Bolsa de Madrid")),
    ("XSWX", "Europe/Zurich", ("SIX Swiss Exchange", "SIX", "SWX")),
    ("XWBO", "Europe/Vienna", ("Wiener Börse", "Wiener Boerse", "Vienna Stock Exchange")),
    ("XSTO", "Europe/Stockholm", ("Nasdaq Stockholm",)),
    ("XCSE", "Europe/Copenhagen", ("Nasdaq Copenhagen",)),
    ("XHEL", "Europe/Helsinki", ("Nasdaq Helsinki",)),
    ("XWAR", "Europe/Warsaw", ("GPW", "Warsaw Stock Exchange")),
    ("XIST", "Europe/Istanbul", ("Borsa Istanbul", "BIST")),
    # Asia, Pacific, Africa, Middle East
    ("XTKS", "Asia/Tokyo", ("TSE", "JPX", "Tokyo Stock Exchange", "東京証券取引所", "東証")),
    ("XHKG", "Asia/Hong_Kong", ("HKEX", "SEHK", "Hong Kong Stock Exchange", "香港交易所")),
    ("XSHG", "Asia/Shanghai", ("SSE", "Shanghai Stock Exchange", "上海证券交易所")),
    ("XSHE", "Asia/Shanghai", ("SZSE", "Shenzhen Stock Exchange", "深圳证券交易所")),
    ("XKRX", "Asia/Seoul", ("KRX", "Korea Exchange")),
    ("XTAI", "Asia/Taipei", ("TWSE", "Taiwan Stock Exchange")),
    ("XSES", "Asia/Singapore", ("SGX", "Singapore Exchange")),
    ("XNSE", "Asia/Kolkata", ("NSE", "National Stock Exchange of India")),
    ("XBOM", "Asia/Kolkata", ("BSE", "Bombay Stock Exchange")),
    ("XIDX", "Asia/Jakarta", ("IDX", "Indonesia Stock Exchange")),
    ("XASX", "Australia/Sydney", ("ASX", "Australian Securities Exchange")),
    ("XNZE", "Pacific/Auckland", ("NZX", "New Zealand Exchange")),
    ("XJSE", "Africa/Johannesburg", ("JSE", "Johannesburg Stock Exchange")),
    ("XTAE", "Asia/Jerusalem", ("TASE", "Tel Aviv Stock Exchange")),
    ("XSAU", "Asia/Riyadh", ("Tadawul", "Saudi Exchange")),
)

_MIC: Final = re.compile(r"[A-Z0-9]{4}\Z")


def normalize_names(values: pa.Array) -> pa.Array:
    """Exchange names as lookup keys: NFKC, whitespace runs as one space, trimmed, upper case.

    NFKC folds full-width letters and no-break spaces into plain ones, and composed and
    decomposed umlauts into one form, so full-width `NYSE`, `nyse ` and `NYSE` are one key.
    """
    t = values.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    text_like = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if not (text_like or pa.types.is_null(t)):
        raise TypeError(f"exchange names must be strings, got {values.type}")
    text = values.cast(pa.string())
    text = pc.utf8_normalize(text, form="NFKC")
    text = pc.replace_substring_regex(text, pattern=r"[\s\p{Z}]+", replacement=" ")
    return pc.utf8_upper(pc.utf8_trim_whitespace(text))


def _normalized(names: Iterable[str]) -> list[str]:
    # Keys go through the same Arrow functions as the data, so both sides agree on every
    # Unicode case mapping (Python's str.upper differs from Arrow's for a few letters).
    return [str(k) for k in normalize_names(pa.array(list(names), pa.string())).to_pylist()]


def check_zone(tz: str) -> str:
    """`tz` if the time-zone database knows it; ValueError otherwise."""
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{tz!r} is not an IANA time zone (e.g. 'Asia/Kuala_Lumpur')") from None
    return tz


def parse_extra(extra: Mapping[str, object]) -> dict[str, tuple[str, str]]:
    """Checked `{name: [MIC, zone]}` entries from the options; ValueError naming the bad one."""
    out: dict[str, tuple[str, str]] = {}
    for name, value in extra.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"extra: exchange names must be non-empty strings, got {name!r}")
        if (
            isinstance(value, str)
            or not isinstance(value, Sequence)
            or len(value) != 2
            or not all(isinstance(v, str) for v in value)
        ):
            raise ValueError(
                f'extra.{name}: expected ["MIC", "Area/City"], e.g. ["XKLS", '
                f'"Asia/Kuala_Lumpur"], got {value!r}'
            )
        mic = str(value[0]).strip().upper()
        if not _MIC.match(mic):
            raise ValueError(f"extra.{name}: {value[0]!r} is not a MIC (4 letters or digits)")
        try:
            out[name] = (mic, check_zone(str(value[1]).strip()))
        except ValueError as exc:
            raise ValueError(f"extra.{name}: {exc}") from None
    return out


def lookup_table(
    extra: Mapping[str, tuple[str, str]] | None = None,
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Normalised names, their MICs and their zones, as three aligned string arrays.

    `extra` entries replace built-in names they share; their MICs match themselves unless the
    MIC is already a name.
    """
    entries: dict[str, tuple[str, str]] = {}
    for mic, tz, aliases in EXCHANGES:
        for key in _normalized((mic, *aliases)):
            if key in entries and entries[key] != (mic, tz):
                raise ValueError(f"built-in exchange name {key!r} is listed twice")
            entries[key] = (mic, tz)
    extra = extra or {}
    for key, value in zip(_normalized(extra), extra.values(), strict=True):
        if not key:
            raise ValueError("extra: an exchange name is blank")
        entries[key] = value
    for mic, tz in extra.values():
        entries.setdefault(mic, (mic, tz))
    keys = list(entries)
    return (
        pa.array(keys, pa.string()),
        pa.array([entries[k][0] for k in keys], pa.string()),
        pa.array([entries[k][1] for k in keys], pa.string()),
    )
