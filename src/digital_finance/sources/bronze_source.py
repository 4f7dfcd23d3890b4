"""Records a batch already landed in bronze: how an interrupted batch is finished when its
files are gone or changed.

Bronze holds every record of the batch exactly as read, with its file and line; quarantine
holds the ones the batch rejected (and why). When both already hold the batch, the records
left for silver are bronze's minus quarantine's, and reading them again gives the same
silver and gold as the files would have: same text, same file order, same line numbers.
Only valid records are read back, so the reader's own verdicts (a record cut at the size
limit, bytes that were not UTF-8), which bronze's text no longer shows, never matter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from digital_finance.lakehouse.storage import Location
from digital_finance.sources.base import SourcePart
from digital_finance.sources.line_chunk import LineChunk, no_reasons

if TYPE_CHECKING:
    import pyarrow as pa


class BronzeSource:
    """One dataset's records of one batch in bronze, less those in its quarantine."""

    kind = "bronze"

    def __init__(self, root: Location, bronze: str, quarantine: str, batch_id: int) -> None:
        self.root, self.bronze, self.quarantine, self.batch_id = root, bronze, quarantine, batch_id

    def _lines(self, table: str, part: SourcePart, text: str | None) -> pa.Table:
        import pyarrow.dataset as ds
        from deltalake import DeltaTable

        where = self.root.child(table)
        data = DeltaTable(where.uri, storage_options=where.storage_options).to_pyarrow_dataset()
        # values as bound expressions, never pasted into text
        wanted = (ds.field("_batch_id") == self.batch_id) & (
            ds.field("source_file") == part.partition
        )
        columns = ["line_number"] if text is None else ["line_number", text]
        return data.to_table(columns=columns, filter=wanted)

    def read(self, part: SourcePart) -> Iterator[LineChunk]:
        """The part's valid records, in line order, as the file reader would give them."""
        import pyarrow as pa
        import pyarrow.compute as pc

        landed = self._lines(self.bronze, part, "record")
        rejected = self._lines(self.quarantine, part, "raw")
        # by line and text: the elements of a JSON array written on one line share a line
        # number, and records with the same text always got the same verdict
        gone = set(
            zip(
                rejected.column("line_number").to_pylist(),
                rejected.column("raw").to_pylist(),
                strict=True,
            )
        )
        lines = landed.column("line_number")
        maybe = pc.is_in(lines, rejected.column("line_number")).to_pylist()
        texts = landed.column("record")
        keep = [
            not (hit and (lines[i].as_py(), texts[i].as_py()) in gone)
            for i, hit in enumerate(maybe)
        ]
        rows = landed.filter(pa.array(keep, pa.bool_())).sort_by("line_number")
        yield LineChunk(
            pa.table(
                {
                    "line_number": rows.column("line_number").combine_chunks(),
                    "raw": rows.column("record").cast(pa.large_string()).combine_chunks(),
                    "line_reason": no_reasons(rows.num_rows),
                }
            )
        )
