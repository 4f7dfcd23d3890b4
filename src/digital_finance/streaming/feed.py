"""What the stream loop needs of a source of messages, and the messages it holds.

Messages travel as Arrow tables of `sources.stream_records.schema()` (dataset, partition,
position, value), one per poll: a catch-up holds a million of them, and an object per
message cost more than reading them from the broker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

# partition -> the position it stands at in the tables (where the next record is read)
Positions = Callable[[], dict[str, int]]


class Feed(Protocol):
    """A source of messages with positions: Kafka, MQTT, …"""

    kind: str  # `kafka`, `mqtt`: bronze's `source`

    def start(self, positions: Positions) -> None:
        """Connect; place every partition it is given at its position in the tables."""

    def poll(self, timeout: float, limit: int) -> pa.Table:
        """Up to `limit` messages (`stream_records.schema()`), waiting at most `timeout`
        seconds for the first."""

    def revoked(self) -> set[str]:
        """Partitions taken away since the last call: held records of them are dropped
        (their next owner reads them from where the tables stand)."""

    def caught_up(self) -> bool:
        """Whether every partition it reads has been read to its end (for `--once`)."""

    def assigned(self) -> bool:
        """Whether it was given any partition to read yet."""

    def done(self, ends: dict[str, int]) -> None:
        """A batch holding these partitions up to these positions is committed."""

    def high_watermarks(self) -> dict[str, int] | None:
        """Per partition read, the position after its last record on the broker (for the
        lag metric); None where the source has no such thing (MQTT)."""

    def close(self) -> None:
        """Disconnect."""


class Held:
    """Messages polled and not yet committed, kept per partition in arrival order.

    Each poll is cut into runs of one partition (slices: nothing copied), so `table()`
    puts them in (dataset, partition, position) order by stitching, where sorting a
    million values would move them all.
    """

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], list[pa.Table]] = {}  # (dataset, partition) ->
        self._count = 0

    def add(self, polled: pa.Table) -> None:
        """Hold more."""
        from digital_finance.sources.stream_records import partition_runs

        for key, rows in partition_runs(polled):
            self._runs.setdefault(key, []).append(rows)
        self._count += polled.num_rows

    def drop(self, partitions: set[str]) -> int:
        """Let go of the messages of these partitions; how many went."""
        gone = 0
        for key in [key for key in self._runs if key[1] in partitions]:
            gone += sum(rows.num_rows for rows in self._runs.pop(key))
        self._count -= gone
        return gone

    def ends(self) -> dict[str, int]:
        """Per partition, the position after the last message held."""
        import pyarrow.compute as pc

        ends: dict[str, int] = {}
        for (_, partition), runs in self._runs.items():
            last = max(int(pc.max(rows["position"]).as_py()) for rows in runs)
            ends[partition] = max(ends.get(partition, 0), last + 1)
        return ends

    def table(self) -> pa.Table:
        """Every message held, as one table in (dataset, partition, position) order."""
        import pyarrow as pa

        from digital_finance.sources.stream_records import ordered, records_table

        if not self._runs:
            return records_table([])
        # a partition read again from an earlier position (assigned anew) is sorted here
        return ordered(pa.concat_tables([r for key in sorted(self._runs) for r in self._runs[key]]))

    def __len__(self) -> int:
        return self._count
