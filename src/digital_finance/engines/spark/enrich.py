"""Apply enrichments to the silver candidates on Spark, in the Python workers.

`mapInArrow` hands each worker Arrow batches of the candidates; they go through
`Enrichment.apply`, the same call the embedded engine makes, so both engines add the same
columns with the same values. The enrichments travel to the workers pickled.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from digital_finance.enrichment import Enrichment, apply_all


def enriched(df: DataFrame, enrichments: Sequence[Enrichment]) -> DataFrame:
    """`df` with the enrichments' columns added."""
    chosen = tuple(enrichments)
    added = from_arrow_schema(
        pa.schema([f for e in chosen for f in e.outputs]), prefer_timestamp_ntz=False
    )
    schema = StructType([*df.schema.fields, *added.fields])

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield apply_all(chosen, batch)

    return df.mapInArrow(apply, schema)
