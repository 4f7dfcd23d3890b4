"""What the runner needs of a source: partitions, read from a position to the position reached.

A source (files today; Kafka, MQTT and the HTTP API next) is a set of partitions, each an
ordered sequence of records with positions: a file's bytes (position = byte offset, with the
line number at that offset), a Kafka partition's offsets. A batch holds, per partition it
touches, one `SourcePart`: the positions [start, end) it covers. The parts are written to
`_system/batches` before any data table, under the batch's id, so a restarted writer knows
from the tables alone where every partition stands (docs/DECISIONS.md, "Positions live in
the batch plan").

A new source implements `Source.read`; planning its parts (what is new since the positions
reached) belongs to the source too, as `runs.plan.plan_run` does for files.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from digital_finance.sources import read_ahead
from digital_finance.sources.file_reader import BLOCK_BYTES, read_chunks
from digital_finance.sources.input_limits import InputLimits
from digital_finance.sources.input_store import InputStore
from digital_finance.sources.line_chunk import LineChunk


class SourcePart(Protocol):
    """One partition's range in a batch."""

    @property
    def source(self) -> str:
        """The kind of source: `file`, later `kafka`, `mqtt`, `http` (bronze's `source`)."""

    @property
    def partition(self) -> str:
        """The partition within the source: a file's path, a Kafka `topic/partition`."""

    @property
    def start(self) -> int:
        """The first position of the range."""

    @property
    def end(self) -> int:
        """The position the range reaches (exclusive): where the next read starts."""

    @property
    def first_line(self) -> int:
        """The line number at `start` (files); 1 for sources without lines."""


class Source(Protocol):
    """Reads the records of a part, in position order, as chunks with line numbers."""

    kind: str

    def read(self, part: SourcePart) -> Iterator[LineChunk]:
        """The raw records of `part`, never past `part.end`."""


class FileSource:
    """Files on a disk or objects in a container: a partition is a path or URI, a position a
    byte offset (`sources.input_store` reaches either)."""

    kind = "file"

    def __init__(
        self,
        block_bytes: int = BLOCK_BYTES,
        limits: InputLimits | None = None,
        store: InputStore | None = None,
    ) -> None:
        self.block_bytes = block_bytes
        self.limits = limits or InputLimits()
        self.store = store or InputStore()

    def read(self, part: SourcePart) -> Iterator[LineChunk]:
        """Bytes [start, end) of the file, every accepted form when read from its start."""
        ahead = read_ahead.take(
            part.partition, part.start, part.end, part.first_line, self.block_bytes, self.limits
        )
        if ahead is not None:
            return ahead
        return read_chunks(
            part.partition,
            self.block_bytes,
            start=part.start,
            end=part.end,
            first_line=part.first_line,
            limits=self.limits,
            store=self.store,
        )
