"""The pipeline's rules as data, rendered by each engine: declared once, so engines cannot drift.

Each rule here is what both engines used to spell out in their own code (DuckDB SQL in
`engines/embedded/`, PySpark in `engines/spark/`). An engine renders it with its own quoting
(`"col"` in DuckDB, `` `col` `` in Spark SQL); `tests/spark/test_rules_render.py` runs every
rendering on both engines over the same rows and compares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Quote = Callable[[str], str]


def duckdb_quote(name: str) -> str:
    """A DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def spark_quote(name: str) -> str:
    """A Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class LatestWins:
    """Which record of a key silver keeps: the latest event, then the one received last.

    Inside a batch "received last" is the later file, then the later line; across batches
    the later batch (shared/CONTRACT.md, "silver").
    """

    key: tuple[str, ...]
    event_time: str
    receipt_in_batch: tuple[str, ...] = ("file_ordinal", "line_number")
    receipt_across_batches: str = "_batch_id"

    def batch_order(self) -> tuple[str, ...]:
        """Columns, largest first wins, that pick one record per key within a batch."""
        return (self.event_time, *self.receipt_in_batch)

    def key_match(self, new: str, old: str, quote: Quote) -> str:
        """SQL: `new` and `old` rows hold the same key."""
        return " AND ".join(f"{old}.{quote(k)} = {new}.{quote(k)}" for k in self.key)

    def newer(self, new: str, old: str, quote: Quote) -> str:
        """SQL: the `new` row (a later batch's winner) replaces the `old` row of its key."""
        ev, batch = quote(self.event_time), quote(self.receipt_across_batches)
        later = f"{new}.{ev} > {old}.{ev}"
        tie = f"{new}.{ev} = {old}.{ev} AND {new}.{batch} > {old}.{batch}"
        return f"{later} OR ({tie})"


@dataclass(frozen=True)
class Lineage:
    """Where each silver row came from: silver column <- staged column."""

    columns: tuple[tuple[str, str], ...] = (
        ("_source_file", "source_file"),
        ("_line_number", "line_number"),
    )


LINEAGE = Lineage()
