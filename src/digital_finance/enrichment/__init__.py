"""Enrichments: columns computed from silver candidate records, the same on every engine.

See docs/ENRICHMENT.md. Typical use by an engine:

    enrichments = load_enrichments(config_items, config_dir)
    stocks = for_dataset(enrichments, "stocks")
    schema = output_schema(batch.schema, stocks)   # declare it up front (Spark mapInArrow)
    batch = apply_all(stocks, batch)
"""

from digital_finance.enrichment.base import (
    Enrichment,
    EnrichmentConfigError,
    EnrichmentError,
    apply_all,
    for_dataset,
    output_schema,
)
from digital_finance.enrichment.builtin import exchange_mic, notional_value, sector
from digital_finance.enrichment.columns import SYSTEM_COLUMNS, silver_columns, validate_inputs
from digital_finance.enrichment.registry import BUILTINS, load_enrichment, load_enrichments

__all__ = [
    "BUILTINS",
    "SYSTEM_COLUMNS",
    "Enrichment",
    "EnrichmentConfigError",
    "EnrichmentError",
    "apply_all",
    "exchange_mic",
    "for_dataset",
    "load_enrichment",
    "load_enrichments",
    "notional_value",
    "output_schema",
    "sector",
    "silver_columns",
    "validate_inputs",
]
