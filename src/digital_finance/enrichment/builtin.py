"""The built-in enrichments. Each factory takes its options as keyword arguments.

The compute functions are module-level and take their data through `functools.partial`, so
Spark pickles them by reference plus a few Arrow arrays.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from digital_finance.enrichment.base import Enrichment, EnrichmentConfigError
from digital_finance.enrichment.exchanges import lookup_table, normalize_names, parse_extra
from digital_finance.enrichment.reference import load_company_reference

PRICE_TYPE: Final = pa.decimal128(18, 6)  # the contract's price column
# price < 10^12 and volume <= 2^63-1, so |price x volume| < 9.3 x 10^30: 31 integer digits
# and 6 fractional ones always fit decimal(38, 6), and the product is exact at scale 6.
NOTIONAL_TYPE: Final = pa.decimal128(38, 6)


def _notional(batch: pa.RecordBatch) -> Sequence[pa.Array]:
    price = batch.column("price")
    volume = batch.column("volume")
    if not pa.types.is_decimal(price.type):
        raise TypeError(
            f"price must be a decimal column (money never goes through float), got {price.type}"
        )
    if not pa.types.is_integer(volume.type):
        raise TypeError(f"volume must be an integer column, got {volume.type}")
    # Safe casts: a value outside decimal(18, 6) or int64 breaks the contract and raises,
    # instead of overflowing the product silently.
    price = price.cast(PRICE_TYPE, safe=True)
    volume = volume.cast(pa.int64(), safe=True)
    return [pc.multiply_checked(price, volume)]  # null when either side is null


def notional_value() -> Enrichment:
    """Stocks: `notional` = price x volume, exact, as decimal(38, 6); null without a volume."""
    return Enrichment(
        name="notional_value",
        dataset="stocks",
        inputs=("price", "volume"),
        outputs=(pa.field("notional", NOTIONAL_TYPE),),
        compute=_notional,
        description="price x volume as an exact decimal(38, 6); null when volume is null",
    )


def _exchange_lookup(
    batch: pa.RecordBatch, *, keys: pa.Array, mics: pa.Array, zones: pa.Array
) -> Sequence[pa.Array]:
    index = pc.index_in(normalize_names(batch.column("exchange")), value_set=keys)
    return [pc.take(mics, index), pc.take(zones, index)]  # a null index takes null


def exchange_mic(*, extra: Mapping[str, Sequence[str]] | None = None) -> Enrichment:
    """Stocks: `exchange_mic` (ISO 10383) and `exchange_tz` (IANA) from the exchange name.

    The name is matched ignoring case, surrounding and repeated whitespace, and Unicode width;
    a MIC matches itself; unknown names and null give null. `extra` adds or replaces names:
    `{"MYX": ["XKLS", "Asia/Kuala_Lumpur"]}`.
    """
    if extra is not None and not isinstance(extra, Mapping):
        raise EnrichmentConfigError(
            f'exchange_mic: extra must be a table such as {{ MYX = ["XKLS", '
            f'"Asia/Kuala_Lumpur"] }}, got {extra!r}'
        )
    try:
        keys, mics, zones = lookup_table(parse_extra(extra or {}))
    except ValueError as exc:
        raise EnrichmentConfigError(f"exchange_mic: {exc}") from None
    return Enrichment(
        name="exchange_mic",
        dataset="stocks",
        inputs=("exchange",),
        outputs=(pa.field("exchange_mic", pa.string()), pa.field("exchange_tz", pa.string())),
        compute=partial(_exchange_lookup, keys=keys, mics=mics, zones=zones),
        description="exchange name -> ISO 10383 MIC and IANA time zone; unknown -> null",
    )


def _company_lookup(
    batch: pa.RecordBatch, *, companies: pa.Array, values: pa.Array
) -> Sequence[pa.Array]:
    company = batch.column("company_id")
    if not pa.types.is_integer(company.type):
        raise TypeError(f"company_id must be an integer column, got {company.type}")
    index = pc.index_in(company.cast(pa.int64(), safe=True), value_set=companies)
    return [pc.take(values, index)]


def sector(
    *,
    reference: str | os.PathLike[str],
    dataset: str = "stocks",
    base_dir: Path | None = None,
) -> Enrichment:
    """`sector` of each record's company, from a CSV file with columns company_id,sector.

    The file is read and checked once, here; a relative `reference` is taken from
    `base_dir` (the config file's folder when loaded from config). Companies the file does not
    list get null.
    """
    if not isinstance(reference, str | os.PathLike) or not str(reference).strip():
        raise EnrichmentConfigError(
            f"sector: reference must be the path of a CSV file, e.g. reference = "
            f'"data/reference/sectors.csv", got {reference!r}'
        )
    if dataset not in ("stocks", "mutual_funds"):
        raise EnrichmentConfigError(
            f'sector: dataset must be "stocks" or "mutual_funds", got {dataset!r}'
        )
    path = Path(reference)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        folder = base_dir if base_dir is not None else "the current folder"
        relative = "" if Path(reference).is_absolute() else f" ({reference} taken from {folder})"
        problem = "is not a file" if path.exists() else "does not exist"
        raise EnrichmentConfigError(f"sector: reference file {path} {problem}{relative}")
    try:
        companies, values = load_company_reference(path, "sector")
    except ValueError as exc:
        raise EnrichmentConfigError(f"sector: {exc}") from None
    return Enrichment(
        name="sector",
        dataset=dataset,
        inputs=("company_id",),
        outputs=(pa.field("sector", pa.string()),),
        compute=partial(_company_lookup, companies=companies, values=values),
        description=f"company_id -> sector from {path.name}; unlisted companies -> null",
    )
