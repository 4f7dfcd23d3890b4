"""Records of stream partitions (Kafka, MQTT, …) as a `Source`: one message, one record.

A message is a record whole, newlines and all: a stream has no lines, and a producer that
pretty-prints its JSON must not see its events split. The message's position (a Kafka
offset, an MQTT sequence number) stands where a file's line number stands, so lineage
(`line_number`, silver's `_line_number`) and "received last" within a partition work as for
files. Empty messages (and Kafka tombstones) are dropped, as blank lines are.

The records are held as one Arrow table (`SCHEMA`), which is also what the spool keeps
(`lakehouse.spool`), so a batch is read the same from memory and, after a crash, from there.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from digital_finance.arrow_arrays import int_array, large_binaries, large_strings, strings
from digital_finance.sources.base import SourcePart
from digital_finance.sources.input_limits import InputLimits
from digital_finance.sources.line_chunk import LineChunk, prefix_text, too_large

if TYPE_CHECKING:
    import pyarrow as pa

CHUNK_RECORDS = 64 * 1024


def schema() -> pa.Schema:
    """Columns of held records: which dataset and partition, the position, the bytes."""
    import pyarrow as pa

    return pa.schema(
        [
            ("dataset", pa.string()),
            ("partition", pa.string()),
            ("position", pa.int64()),
            ("value", pa.large_binary()),
        ]
    )


def records_table(rows: Iterable[tuple[str, str, int, bytes]]) -> pa.Table:
    """A table of held records from (dataset, partition, position, value) tuples."""
    import pyarrow as pa

    columns_of = list(zip(*rows, strict=True))
    if not columns_of:
        columns_of = [(), (), (), ()]
    datasets, partitions, positions, values = columns_of
    columns = [
        strings(datasets),
        strings(partitions),
        int_array(positions, pa.int64()),
        large_binaries(values),
    ]
    return pa.Table.from_arrays(columns, schema=schema())


class StreamRecords:
    """A batch's stream records; `read(part)` yields those of the part's partition and range."""

    def __init__(self, table: pa.Table, kind: str, limits: InputLimits | None = None) -> None:
        self.table = table
        self.kind = kind
        self.limits = limits or InputLimits()
        self._encoded: tuple[str, bytes] | None = None
        # partition -> (positions, values) in position order, made once for every part: a
        # batch may hold thousands of partitions (an MQTT topic per device)
        self._index: dict[str, tuple[list[int], list[bytes]]] | None = None

    def with_limits(self, limits: InputLimits) -> StreamRecords:
        """The same records, read under a dataset's limits."""
        view = StreamRecords(self.table, self.kind, limits)
        view._encoded, view._index = self._encoded, self._partitions()
        return view

    def _partitions(self) -> dict[str, tuple[list[int], list[bytes]]]:
        if self._index is None:
            ordered = self.table.sort_by([("partition", "ascending"), ("position", "ascending")])
            index: dict[str, tuple[list[int], list[bytes]]] = {}
            for partition, position, value in zip(
                ordered["partition"].to_pylist(), ordered["position"].to_pylist(),
                ordered["value"].to_pylist(), strict=True,
            ):  # fmt: skip
                held = index.setdefault(partition, ([], []))
                held[0].append(position)
                held[1].append(value)
            self._index = index
        return self._index

    def encoded(self) -> tuple[str, bytes]:
        """The records as the spool keeps them: (name, Parquet bytes); the name is the
        SHA-256 of the bytes, so the same records always make the same spool file."""
        if self._encoded is None:
            from digital_finance.lakehouse.spool import encode

            self._encoded = encode(self.table)
        return self._encoded

    def spool_name(self) -> str:
        """The name of the spool file that keeps these records."""
        return self.encoded()[0]

    def read(self, part: SourcePart) -> Iterator[LineChunk]:
        """The part's records in position order, as chunks (position as `line_number`)."""
        held_positions, held_values = self._partitions().get(part.partition, ([], []))
        first = bisect.bisect_left(held_positions, part.start)
        last = bisect.bisect_left(held_positions, part.end)
        positions, values = held_positions[first:last], held_values[first:last]
        for at in range(0, len(values), CHUNK_RECORDS):
            chunk = message_chunk(
                positions[at : at + CHUNK_RECORDS], values[at : at + CHUNK_RECORDS], self.limits
            )
            if chunk is not None:
                yield chunk


def stored_text(value: bytes, limits: InputLimits) -> str:
    """A message's text as bronze keeps it: its first bytes when over the record limit,
    escaped where it is not UTF-8."""
    if len(value) > limits.max_record_bytes:
        return prefix_text(value)
    return value.decode("utf-8", errors="backslashreplace")


def message_chunk(
    positions: list[int], values: list[bytes], limits: InputLimits
) -> LineChunk | None:
    """Messages as a chunk with the reader's verdicts: too large, not UTF-8, or whole."""
    import numpy as np
    import pyarrow as pa

    numbers: list[int] = []
    texts: list[str] = []
    big: list[bool] = []
    bad: list[bool] = []
    for position, value in zip(positions, values, strict=True):
        if not value or value.isspace():
            continue
        numbers.append(position)
        oversize = len(value) > limits.max_record_bytes
        big.append(oversize)
        if oversize:
            texts.append(prefix_text(value))
            bad.append(False)
            continue
        try:
            texts.append(value.decode("utf-8"))
            bad.append(False)
        except UnicodeDecodeError:
            texts.append(value.decode("utf-8", errors="backslashreplace"))
            bad.append(True)
    if not numbers:
        return None
    reasons = too_large(np.array(big, dtype=np.bool_), np.array(bad, dtype=np.bool_))
    return LineChunk(
        pa.Table.from_arrays(
            [int_array(numbers, pa.int64()), large_strings(texts), reasons],
            names=["line_number", "raw", "line_reason"],
        )
    )
