"""Which columns an enrichment may read (silver columns) and may not write (those, and ours)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Final

from digital_finance.contract.schemas import DATASETS

if TYPE_CHECKING:
    from digital_finance.enrichment.base import Enrichment

# The columns the pipeline adds to every silver row besides the contract's fields.
SYSTEM_COLUMNS: Final = ("_rescued", "_source_file", "_line_number", "_batch_id", "_ingested_at")


@cache
def silver_columns(dataset: str) -> tuple[str, ...]:
    """The contract's silver columns of `dataset`, in contract order."""
    try:
        spec = DATASETS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; use one of {sorted(DATASETS)}") from None
    return tuple(f.silver_name for f in spec.fields)


@cache
def reserved_columns(dataset: str) -> frozenset[str]:
    """Column names an enrichment of `dataset` may not produce."""
    return frozenset(silver_columns(dataset)) | frozenset(SYSTEM_COLUMNS)


def validate_inputs(enrichment: Enrichment) -> None:
    """Raise `EnrichmentConfigError` unless every input is a silver column of its dataset.

    `Enrichment` already checks this when it is made; this is for callers that want to state
    the check where they rely on it.
    """
    from digital_finance.enrichment.base import EnrichmentConfigError

    known = silver_columns(enrichment.dataset)
    unknown = [c for c in enrichment.inputs if c not in known]
    if unknown:
        raise EnrichmentConfigError(
            f"enrichment {enrichment.name!r}: {unknown} are not silver columns of "
            f"{enrichment.dataset}; inputs must be among {list(known)}"
        )
