"""What `_system` says of the batches, kept up to date by reading only what was appended.

The runner plans from the whole history twice per batch; read whole, `_system/batches`
grows with every batch, so a stream's plans would slow down as it runs (a day of 1 s
triggers is 86,400 batches). The `_system` tables are only ever appended to, so a refresh
brings each open table to its newest version and reads the data files added since the
last refresh; the history is extended by their rows. When a file went (a compaction), or on
object stores, the table is read whole and the history rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from digital_finance.engines.embedded import delta_io
from digital_finance.lakehouse import system_rows
from digital_finance.lakehouse.layout import TABLES
from digital_finance.lakehouse.storage import Location
from digital_finance.runs.plan import History, PlannedFile

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable


@dataclass
class _Appended:
    """One append-only table, and the files of it already read."""

    root: Location
    name: str
    dt: DeltaTable | None = None
    seen: set[str] = field(default_factory=set)

    def refresh(self) -> tuple[bool, pa.Table | None]:
        """(whether the table must be taken whole, the rows to add or take)."""
        if self.dt is None:
            self.dt = delta_io.open_table(self.root, self.name)
            if self.dt is None:
                return False, None
        else:
            self.dt.update_incremental()
        if not self.root.is_local:
            self.seen = set()
            return True, self.dt.to_pyarrow_table()
        files = set(delta_io.local_files(self.dt))
        whole = not self.seen <= files
        new = sorted(files if whole else files - self.seen)
        self.seen = files
        if not new:
            return whole, None
        return whole, _read(new)


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
        self.planned: list[tuple[int, PlannedFile]] = []
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
        """The history as the tables hold it now."""
        parts = [self.batches.refresh(), self.runs.refresh(), self.forgotten.refresh()]
        if any(whole for whole, _ in parts):
            for table in (self.batches, self.runs, self.forgotten):
                table.seen = set()
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
        self.planned += added.planned
        self.succeeded |= added.succeeded
        self.abandoned |= added.abandoned
        self.abandoning |= set(added.abandoning)
        for path, batch in added.forgotten.items():
            self.forgot[path] = max(self.forgot.get(path, 0), batch)
        return History(
            list(self.planned),
            set(self.succeeded),
            set(self.abandoned),
            dict(self.forgot),
            frozenset(self.abandoning - self.abandoned),
        )
