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

import itertools
import secrets
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from digital_finance.arrow_arrays import int_array, large_binaries, large_strings, strings
from digital_finance.sources.base import SourcePart
from digital_finance.sources.input_limits import InputLimits
from digital_finance.sources.line_chunk import LineChunk, no_reasons, prefix_text, too_large

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
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


def coded_records(
    names: Sequence[tuple[str, str]],
    codes: npt.ArrayLike,
    positions: npt.ArrayLike,
    values: Sequence[bytes],
) -> pa.Table:
    """A table of held records given as columns: record `i` is of the (dataset, partition)
    `names[codes[i]]`, at `positions[i]`, holding `values[i]`. A feed builds these columns
    with one list comprehension each, where a tuple per record cost more than the broker."""
    import pyarrow as pa

    indices = int_array(codes, pa.int32())
    datasets, partitions = (strings([n[i] for n in names]) for i in (0, 1))
    columns = [
        pa.DictionaryArray.from_arrays(indices, datasets).cast(pa.string()),
        pa.DictionaryArray.from_arrays(indices, partitions).cast(pa.string()),
        int_array(positions, pa.int64()),
        large_binaries(values),
    ]
    return pa.Table.from_arrays(columns, schema=schema())


def ordered(table: pa.Table) -> pa.Table:
    """`table` in (dataset, partition, position) order, the one order records are kept in:
    as it is when it is so already (a feed's polls, stitched by `Held`, are), else sorted
    (moving a million values costs 0.6 s)."""
    if table.num_rows < 2 or _in_order(table):
        return table
    return table.sort_by(
        [("dataset", "ascending"), ("partition", "ascending"), ("position", "ascending")]
    )


def _in_order(table: pa.Table) -> bool:
    """Whether each (dataset, partition) is one run of rows, the runs in that order and
    positions rising within each: the run boundaries are found by comparing neighbours
    (no distinct values sorted), and only the few boundaries are compared as keys."""
    import numpy as np

    cuts = _cuts(table)
    keys = _run_keys(table, cuts)
    if any(later <= earlier for earlier, later in itertools.pairwise(keys)):
        return False
    positions = table["position"].to_numpy()
    rising = positions[1:] >= positions[:-1]
    rising[cuts - 1] = True  # a new run may start anywhere
    return bool(np.all(rising))


def _cuts(table: pa.Table) -> npt.NDArray[np.int64]:
    """The rows where (dataset, partition) differs from the row before."""
    import numpy as np
    import pyarrow.compute as pc

    n = table.num_rows
    if n < 2:
        return np.zeros(0, dtype=np.int64)
    changed = pc.or_(
        *(
            pc.not_equal(table[c].slice(1), table[c].slice(0, n - 1))
            for c in ("dataset", "partition")
        )
    )
    return np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1


def _run_keys(table: pa.Table, cuts: npt.NDArray[np.int64]) -> list[tuple[str, str]]:
    import numpy as np

    starts = np.concatenate(([0], cuts))
    datasets, partitions = (table[c].take(starts).to_pylist() for c in ("dataset", "partition"))
    return list(zip(datasets, partitions, strict=True))


def partition_runs(table: pa.Table) -> list[tuple[tuple[str, str], pa.Table]]:
    """The table cut where (dataset, partition) changes: ((dataset, partition), rows), in
    table order, each a slice (nothing copied)."""
    if table.num_rows == 0:
        return []
    cuts = _cuts(table)
    starts = [0, *cuts.tolist()]
    ends = [*cuts.tolist(), table.num_rows]
    return [
        (key, table.slice(at, end - at))
        for key, at, end in zip(_run_keys(table, cuts), starts, ends, strict=True)
    ]


class StreamRecords:
    """A batch's stream records; `read(part)` yields those of the part's partition and range.

    The records are kept in (dataset, partition, position) order (`ordered`), so a
    partition's are one run of rows and a part's range is a slice of it. They go to the
    spool (`encoded`) under a name drawn when the batch is planned; the Parquet bytes are
    made on a thread of their own while the batch is staged, and awaited at its claim.
    """

    def __init__(
        self,
        table: pa.Table,
        kind: str,
        limits: InputLimits | None = None,
        *,
        in_order: bool = False,
    ) -> None:
        self.table = table if in_order else ordered(table)
        self.kind = kind
        self.limits = limits or InputLimits()
        self._name: str | None = None
        self._encoding: _Encoding | None = None
        # partition -> (first row, positions in order), made once for every part: a batch
        # may hold thousands of partitions (an MQTT topic per device)
        self._index: dict[str, tuple[str, int, npt.NDArray[np.int64]]] | None = None

    def with_limits(self, limits: InputLimits) -> StreamRecords:
        """The same records, read under a dataset's limits."""
        view = StreamRecords(self.table, self.kind, limits, in_order=True)
        view._name, view._encoding, view._index = self._name, self._encoding, self._partitions()
        return view

    def _partitions(self) -> dict[str, tuple[str, int, npt.NDArray[np.int64]]]:
        if self._index is None:
            positions = self.table["position"].to_numpy()
            index = {}
            at = 0
            for (dataset, partition), rows in partition_runs(self.table):
                index[partition] = (dataset, at, positions[at : at + rows.num_rows])
                at += rows.num_rows
            self._index = index
        return self._index

    def ranges(self) -> dict[str, dict[str, tuple[int, int]]]:
        """dataset -> partition -> (first, last) position held."""
        out: dict[str, dict[str, tuple[int, int]]] = {}
        for partition, (dataset, _, positions) in self._partitions().items():
            out.setdefault(dataset, {})[partition] = (int(positions[0]), int(positions[-1]))
        return out

    def spool_name(self) -> str:
        """The name of the spool file that will keep these records; their Parquet bytes
        are made from now on, beside the staging."""
        if self._name is None:
            self._name = secrets.token_hex(32)
            self._encoding = _Encoding(self.table)
        return self._name

    def encoded(self) -> tuple[str, bytes]:
        """The records as the spool keeps them: (name, Parquet bytes)."""
        name = self.spool_name()
        assert self._encoding is not None
        return name, self._encoding.result()

    def read(self, part: SourcePart) -> Iterator[LineChunk]:
        """The part's records in position order, as chunks (position as `line_number`)."""
        import numpy as np

        found = self._partitions().get(part.partition)
        if found is None:
            return
        _, row, positions = found
        first = int(np.searchsorted(positions, part.start, side="left"))
        last = int(np.searchsorted(positions, part.end, side="left"))
        values = self.table["value"]
        for at in range(first, last, CHUNK_RECORDS):
            upto = min(at + CHUNK_RECORDS, last)
            chunk = message_chunk(
                positions[at:upto], values.slice(row + at, upto - at).combine_chunks(), self.limits
            )
            if chunk is not None:
                yield chunk


class _Encoding:
    """The spool's Parquet bytes of a table, made on a thread (zstd: a third of a second
    for a million records, which the staging beside it hides)."""

    def __init__(self, table: pa.Table) -> None:
        self._data: bytes | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._encode, args=(table,), name="spool-encode", daemon=True
        )
        self._thread.start()

    def _encode(self, table: pa.Table) -> None:
        from digital_finance.lakehouse.spool import encode

        try:
            self._data = encode(table)
        except BaseException as exc:  # handed to whoever waits for the bytes
            self._error = exc

    def result(self) -> bytes:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._data is not None
        return self._data


def stored_text(value: bytes, limits: InputLimits) -> str:
    """A message's text as bronze keeps it: its first bytes when over the record limit,
    escaped where it is not UTF-8."""
    if len(value) > limits.max_record_bytes:
        return prefix_text(value)
    return value.decode("utf-8", errors="backslashreplace")


def message_chunk(
    positions: npt.NDArray[np.int64], values: pa.Array, limits: InputLimits
) -> LineChunk | None:
    """Messages as a chunk with the reader's verdicts: too large, not UTF-8, or whole.

    Whole columns at once when every message is whole UTF-8 within the limit (Arrow
    checks the UTF-8 as it casts), which is nearly always; message by message otherwise.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(values):
        return None
    if values.type != pa.large_binary():  # Spark hands its messages over as `binary`
        values = values.cast(pa.large_binary())
    texts = None
    if pc.max(pc.binary_length(values)).as_py() <= limits.max_record_bytes:
        try:
            texts = values.cast(pa.large_string())
        except pa.ArrowInvalid:
            texts = None  # some are not UTF-8: each is judged below
    if texts is None:
        return _judged_one_by_one(positions.tolist(), values.to_pylist(), limits)
    # empty and all-whitespace messages are dropped, as blank lines are
    kept = pc.greater(pc.binary_length(pc.ascii_trim_whitespace(texts)), 0)
    if kept.false_count:
        texts = texts.filter(kept)
        positions = positions[kept.to_numpy(zero_copy_only=False)]
    if not len(texts):
        return None
    return LineChunk(
        pa.Table.from_arrays(
            [int_array(positions, pa.int64()), texts, no_reasons(len(texts))],
            names=["line_number", "raw", "line_reason"],
        )
    )


def _judged_one_by_one(
    positions: list[int], values: list[bytes], limits: InputLimits
) -> LineChunk | None:
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
