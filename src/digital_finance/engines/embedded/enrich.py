"""Apply enrichments to the silver candidates on the embedded engine.

The candidates stream out of DuckDB as Arrow batches, each batch goes through
`Enrichment.apply` (the same call the Spark engine makes on its workers), and the enriched
rows land in a DuckDB table that the silver write then reads like any other query.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from digital_finance.contract.compiled_sql import ident
from digital_finance.enrichment import Enrichment, apply_all, output_schema

BATCH_ROWS = 64 * 1024


def enriched(
    con: duckdb.DuckDBPyConnection, sql: str, enrichments: Sequence[Enrichment], dataset: str
) -> str:
    """SQL of `sql`'s rows with the enrichments' columns added."""
    reader = con.cursor().sql(sql).to_arrow_reader(BATCH_ROWS)
    schema = output_schema(reader.schema, enrichments)
    batches = (apply_all(enrichments, batch) for batch in reader)
    source = pa.RecordBatchReader.from_batches(schema, batches)
    table = ident(f"_enriched_{dataset}")
    writer = con.cursor()
    writer.register("_enrich_source", source)
    # a plain (not TEMP) table: the silver write reads it from a cursor of its own
    writer.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _enrich_source")
    writer.unregister("_enrich_source")
    return f"SELECT * FROM {table}"
