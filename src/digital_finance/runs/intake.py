"""What a run takes in, planned against the tables: new file parts, or a stream's records.

The batch runner plans twice, once before staging and once under the commit lock, each
time from the `_system` tables as they are then (`runs.batch_runner`). An intake is what
it plans with: `FileIntake` for listed files (`runs.plan.plan_run`), `StreamIntake` for
the records a stream consumer holds, trimmed to what no batch holds yet. Both finish an
unfinished batch first, whatever source it came from.
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

from digital_finance.arrow_arrays import bool_array, strings
from digital_finance.runs.plan import (
    Batch,
    History,
    Plan,
    PlannedFile,
    Scanner,
    Spooled,
    plan_run,
    reached_positions,
)
from digital_finance.sources import read_ahead
from digital_finance.sources.discovery import InputFile
from digital_finance.sources.file_reader import BLOCK_BYTES
from digital_finance.sources.file_scan import FileScan
from digital_finance.sources.input_limits import InputLimits
from digital_finance.sources.input_store import InputStore, is_uri

if TYPE_CHECKING:
    import pyarrow as pa


class Intake(Protocol):
    """Plans a run from what the `_system` tables say."""

    def plan(self, past: History, from_bronze: int | None, spooled: Spooled) -> Plan:
        """The batch to finish, if any, and the new batch."""


class FileIntake:
    """Listed files per dataset: what is new in them (`plan_run`)."""

    def __init__(self, inputs: dict[str, list[InputFile]], store: InputStore | None = None) -> None:
        self.inputs = inputs
        self.store = store or InputStore()
        self.scan = _Memoized(self.store.scan)  # both plans of a run hash each file once

    def plan(self, past: History, from_bronze: int | None, spooled: Spooled) -> Plan:
        """See `runs.plan.plan_run`."""
        return _planned(self.inputs, past, from_bronze, spooled, self.store, self.scan)

    def hash_ahead(self) -> None:
        """Start hashing every listed file whole, on threads, without waiting.

        For a lakehouse that never planned a batch, where the plan hashes every file: the
        hashing then runs while the engine's libraries load (a third of a second on one
        core). Elsewhere the plan alone knows which files need it, so this is not asked."""
        wanted: list[tuple[str, int, int | None]] = [
            (f.path, f.size, None) for files in self.inputs.values() for f in files
        ]
        self.scan.ahead(wanted)

    def read_ahead(self, order: list[tuple[str, InputLimits]]) -> None:
        """Start reading the files a new lakehouse's batch reads first (`sources.read_ahead`):
        those of the first dataset in `order` (the staging order, with each dataset's reader
        limits) that has any. Asked where `hash_ahead` is; local files only."""
        for dataset, limits in order:
            files = self.inputs.get(dataset) or []
            if files:
                local = [(f.path, f.size) for f in files if not is_uri(f.path)]
                read_ahead.start(local, BLOCK_BYTES, limits)
                return


class StreamIntake:
    """Records a stream consumer holds (`sources.stream_records.schema()`), per partition.

    A partition's part starts where the tables say it stands (the end of its last part in
    any batch, `reached_positions`): records below that were taken by another writer (a
    consumer that owned the partition before a rebalance) and are dropped, so no position
    is ever in two batches. A partition the tables do not know yet starts at its first
    record held.
    """

    def __init__(self, kind: str, records: pa.Table, store: InputStore | None = None) -> None:
        self.kind = kind
        self.records = records
        self.store = store or InputStore()  # for a file batch it finishes first
        # the last plan's records and parts, by the positions they were cut at: the plan
        # under the lock nearly always finds what the plan before staging found
        self._last: tuple[tuple[tuple[str, int], ...], Batch] | None = None

    def plan(self, past: History, from_bronze: int | None, spooled: Spooled) -> Plan:
        """Finish an unfinished batch; then the held records no batch holds yet."""
        from digital_finance.sources.stream_records import StreamRecords

        plan = _planned({}, past, from_bronze, spooled, self.store, self.store.scan)
        reached = reached_positions(past.planned, past.abandoned)
        next_id = max((b for b, _ in past.planned), default=0) + 1
        cut = tuple(sorted((p, n) for (k, p), n in reached.items() if k == self.kind))
        if self._last is not None and self._last[0] == cut:
            previous = self._last[1]
            plan.new = Batch(next_id, previous.files, records=previous.records)
            return plan
        fresh = self._unclaimed(reached)
        if fresh.num_rows == 0:
            return plan
        held = StreamRecords(fresh, self.kind)
        sha = held.spool_name()
        parts: list[PlannedFile] = []
        for dataset, partitions in held.ranges().items():
            for ordinal, (partition, (first, last)) in enumerate(
                sorted(partitions.items(), key=lambda kv: natural_key(kv[0]))
            ):
                start = reached.get((self.kind, partition), first)
                parts.append(
                    PlannedFile(
                        dataset,
                        ordinal,
                        InputFile(partition, last + 1, 0),
                        start=start,
                        first_line=start,
                        sha256=sha,
                        source=self.kind,
                    )
                )
        plan.new = Batch(next_id, tuple(parts), records=held)
        self._last = (cut, plan.new)
        return plan

    def _unclaimed(self, reached: dict[tuple[str, str], int]) -> pa.Table:
        """The held records at or past their partition's reached position."""
        import numpy as np
        import pyarrow.compute as pc

        t = self.records
        if t.num_rows == 0 or not reached:
            return t
        held = pc.unique(t["partition"]).to_pylist()
        floors = np.array([reached.get((self.kind, p), -1) for p in held], dtype=np.int64)
        if not (floors >= 0).any():
            return t
        which = pc.index_in(t["partition"], value_set=strings(held)).to_numpy()
        keep = t["position"].to_numpy() >= floors[which]
        return t if keep.all() else t.filter(bool_array(keep))


def _planned(
    inputs: dict[str, list[InputFile]],
    past: History,
    from_bronze: int | None,
    spooled: Spooled,
    store: InputStore,
    scan: Scanner,
) -> Plan:
    return plan_run(
        inputs,
        past.planned,
        past.succeeded,
        scan,
        abandoned=past.abandoned,
        forgotten=past.forgotten,
        from_bronze=from_bronze,
        spooled=spooled,
        stat=store.stat,
    )


def natural_key(partition: str) -> tuple[tuple[int, str], ...]:
    """`stocks/10` after `stocks/9`."""
    pieces = re.split(r"(\d+)", partition)
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in pieces)


class _Memoized:
    """A scanner that scans each (path, size, start) once: both plans of a run hash each
    file once. `prefetch` scans the files a plan will take side by side (hashlib lets go
    of the interpreter: 167 MB hashed on one thread cost the 1M batch 0.22 s); `ahead`
    starts such scans without waiting for them."""

    def __init__(self, scan: Scanner) -> None:
        self._scan = scan
        self._seen: dict[tuple[str, int, int | None], FileScan] = {}
        self._pending: dict[tuple[str, int, int | None], Future[FileScan]] = {}
        self._lock = threading.Lock()

    def __call__(self, path: str, size: int, at: int | None) -> FileScan:
        key = (path, size, at)
        with self._lock:
            pending = self._pending.pop(key, None)
        if pending is not None and pending.exception() is None:
            self._seen[key] = pending.result()
        if key not in self._seen:
            # a scan ahead that failed is made again here, and fails here
            self._seen[key] = self._scan(path, size, at)
        return self._seen[key]

    def prefetch(self, wanted: list[tuple[str, int, int | None]]) -> None:
        """Start the scans the plan will ask for (a call waits for its own)."""
        if len(dict.fromkeys(wanted)) >= 2:  # one file: hashed where it is asked for
            self.ahead(wanted)

    def ahead(self, wanted: list[tuple[str, int, int | None]]) -> ThreadPoolExecutor:
        """Start scanning `wanted` on up to four threads; the pool, shut down once they end."""
        pool = ThreadPoolExecutor(min(max(len(wanted), 1), os.cpu_count() or 2, 4))
        with self._lock:
            for key in dict.fromkeys(wanted):
                if key not in self._seen and key not in self._pending:
                    self._pending[key] = pool.submit(self._scan, *key)
        pool.shutdown(wait=False)  # the threads finish the scans, then end
        return pool
