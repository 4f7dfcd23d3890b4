"""What `_system` says of the batches, kept up to date by reading only what was appended.

The runner plans from the history twice per batch, and a day of 1 s triggers is 86,400
batches, so neither reading it nor planning from it may grow with the batches behind:
- **Reading.** The `_system` tables are only ever appended to. A refresh brings each open
  table to its newest version and reads the log's commits since the last refresh: the files
  they add with changed data are read and their rows added; a compaction's commits (files
  rewritten with `dataChange` false: `digital-finance maintain`, a stream's upkeep) change
  no row and are passed over. Anything else (a commit removing data, a log entry gone, an
  object store) reads the table whole and builds the history again.
- **Planning.** A succeeded stream batch's parts matter to later plans only through where
  each partition stands (`runs.plan.reached_positions`) and the highest batch id; so once a
  batch succeeded its stream parts are folded into the furthest part per partition, and the
  history holds every file part (files are known by content, forever), the parts of every
  batch not succeeded, and one part per stream partition. `system_tables.history` reads the
  whole history, for the commands that want every batch (`batch abandon`, `forget`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from digital_finance.engines.embedded import delta_io, delta_reads
from digital_finance.lakehouse import system_rows
from digital_finance.lakehouse.layout import TABLES
from digital_finance.lakehouse.storage import Location
from digital_finance.runs.plan import History, PlannedFile

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable


@dataclass
class _Appended:
    """One append-only table, and the version of it already read."""

    root: Location
    name: str
    dt: DeltaTable | None = None
    version: int = -1  # read up to here; -1: nothing read yet

    def refresh(self) -> tuple[bool, pa.Table | None]:
        """(whether the table must be taken whole, the rows to add or take)."""
        if self.dt is None:
            self.dt = delta_io.open_table(self.root, self.name)
            if self.dt is None:
                return False, None
        else:
            self.dt.update_incremental()
        now = self.dt.version()
        if not self.root.is_local:
            self.version = now
            return True, self.dt.to_pyarrow_table()
        added = None if self.version < 0 else _added_since(self.root, self.name, self.version, now)
        whole = added is None
        self.version = now
        paths = delta_reads.local_files(self.dt) if added is None else added
        return whole, _read(paths) if paths else None


def _added_since(root: Location, table: str, after: int, upto: int) -> list[str] | None:
    """The files commits (after, upto] added with new rows, as paths; None when the log
    says more than appends (rows removed or changed) or no longer holds those commits."""
    folder = root.path / table
    added: list[str] = []
    for version in range(after + 1, upto + 1):
        try:
            lines = (folder / "_delta_log" / f"{version:020d}.json").read_text().splitlines()
        except FileNotFoundError:
            return None
        for line in lines:
            action = json.loads(line)
            if "add" in action and action["add"].get("dataChange", True):
                added.append(str(folder / unquote(action["add"]["path"])))
            elif "remove" in action and action["remove"].get("dataChange", True):
                return None
    return added


def _read(paths: list[str]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # files of one table may differ in schema (the run log gains columns by schema merge);
    # each file read as itself: `read_table`'s dataset layer costs as much again per file
    tables = [pq.ParquetFile(p).read() for p in paths]
    return pa.concat_tables(tables, promote_options="default")


class SystemHistory:
    """The batches' history of one lakehouse, for the life of a runner."""

    def __init__(self, root: Location) -> None:
        self.root = root
        self.batches = _Appended(root, TABLES.batches)
        self.runs = _Appended(root, TABLES.runs)
        self.forgotten = _Appended(root, TABLES.forgotten)
        self._read_at: tuple[int, ...] | None = None
        self._reset()

    def _tables(self) -> tuple[_Appended, _Appended, _Appended]:
        return self.batches, self.runs, self.forgotten

    def _reset(self) -> None:
        self.files: list[tuple[int, PlannedFile]] = []  # every file part, in log order
        self.unsettled: dict[int, list[PlannedFile]] = {}  # stream parts of batches not succeeded
        # succeeded stream batches' parts, folded: the furthest per (source, partition)
        self.furthest: dict[tuple[str, str], tuple[int, PlannedFile]] = {}
        # the last succeeded stream batch's parts: the next batch's id follows it, even
        # when none of them is a partition's furthest
        self.last: list[tuple[int, PlannedFile]] = []
        self.succeeded: set[int] = set()
        self.abandoned: set[int] = set()
        self.abandoning: set[int] = set()
        self.forgot: dict[str, int] = {}

    def mark(self) -> tuple[int, ...] | None:
        """The versions of the `_system` tables that the last `read` read: a later `moved`
        on an equal mark means the history is still the one read. None on object stores."""
        return self._read_at

    def moved(self, mark: tuple[int, ...]) -> bool:
        """Whether any `_system` table has a version other than `mark` now."""
        now = []
        for table in (self.batches, self.runs, self.forgotten):
            if table.dt is None:
                if delta_io.open_table(self.root, table.name) is not None:
                    return True  # made since the read
                now.append(-1)
                continue
            table.dt.update_incremental()
            now.append(table.dt.version())
        return tuple(now) != mark

    def read(self) -> History:
        """The history as the tables hold it now, succeeded stream batches folded."""
        parts = [self.batches.refresh(), self.runs.refresh(), self.forgotten.refresh()]
        if any(whole for whole, _ in parts):
            for table in (self.batches, self.runs, self.forgotten):
                table.version = -1
            self._reset()
            parts = [self.batches.refresh(), self.runs.refresh(), self.forgotten.refresh()]
        # the versions the rows were read at, each taken when its table was (a commit
        # landing between two refreshes is in the mark exactly as it is in the history)
        self._read_at = (
            tuple(t.dt.version() if t.dt is not None else -1 for t in self._tables())
            if self.root.is_local
            else None
        )
        added = system_rows.history(parts[0][1], parts[1][1], parts[2][1])
        self.succeeded |= added.succeeded
        self.abandoned |= added.abandoned
        self.abandoning |= set(added.abandoning)
        for batch_id, part in added.planned:
            if part.is_file:
                self.files.append((batch_id, part))
            else:
                self.unsettled.setdefault(batch_id, []).append(part)
        for batch_id in [b for b in self.unsettled if b in self.succeeded]:
            for part in self.unsettled.pop(batch_id):
                self._fold(batch_id, part)
        for path, batch in added.forgotten.items():
            self.forgot[path] = max(self.forgot.get(path, 0), batch)
        planned = [*self.files, *((b, p) for b, ps in self.unsettled.items() for p in ps)]
        furthest = set(self.furthest.values())
        planned += self.furthest.values()
        planned += (bp for bp in self.last if bp not in furthest)
        ids = {b for b, _ in planned}
        return History(
            planned,
            self.succeeded & ids,
            self.abandoned & ids,
            dict(self.forgot),
            frozenset(self.abandoning - self.abandoned),
        )

    def _fold(self, batch_id: int, part: PlannedFile) -> None:
        key = (part.source, part.partition)
        held = self.furthest.get(key)
        if held is None or (part.end, batch_id) > (held[1].end, held[0]):
            self.furthest[key] = (batch_id, part)
        if not self.last or batch_id > self.last[0][0]:
            self.last = [(batch_id, part)]
        elif batch_id == self.last[0][0]:
            self.last.append((batch_id, part))
