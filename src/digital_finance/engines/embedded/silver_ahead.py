"""Silver's files of a batch, written on a thread of their own while bronze and quarantine
are committed (a new table's, a rebuild's, a mark's and `auto`'s small rewrite's:
`EmbeddedRunner.begin_commit`).

Silver's new files depend on the staged batch and on silver as it stands under the commit
lock, not on bronze or quarantine; only the commits must come in the definition's order.
So once the lock is held and the batch staged, the files that silver's commit will add are
written beside the claim and the bronze and quarantine commits (DuckDB and delta-rs let go
of the interpreter while they work), and silver's step only commits them. For a stream's
batch of 20,000 records into 50,000 keys that is most of silver's time (docs/PERFORMANCE.md).

Files written ahead and never committed (the batch failed before silver) are removed when
the batch's staging ends; a writer killed meanwhile leaves them to the next run's sweep of
files no commit names (`lakehouse.orphans`), as any write cut short does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import duckdb

from digital_finance.engines.embedded import silver_merge
from digital_finance.engines.embedded.silver_merge import Candidates, Written
from digital_finance.engines.embedded.staging import StagedDataset
from digital_finance.lakehouse.storage import Location


@dataclass(frozen=True)
class Ahead:
    """A silver table's write started ahead: the cursor it runs on (free again once the
    write is done), the batch's candidates, and the files being written."""

    table: str
    con: duckdb.DuckDBPyConnection
    batch: Candidates
    files: Future[Written | None]

    def written(self) -> Written | None:
        """The files once written (None when DuckDB does not write them:
        `silver_merge.write_files`); the write's error, if it failed."""
        return self.files.result()


class SilverAhead:
    """The silver writes started for staged batches, by staged dataset: a runner used by
    several threads keeps each batch's own."""

    def __init__(self, root: Location) -> None:
        self.root = root
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[StagedDataset, Ahead] = {}

    def start(
        self,
        dataset: StagedDataset,
        table: str,
        con: duckdb.DuckDBPyConnection,
        batch: Candidates,
        *,
        write: bool,
    ) -> None:
        """Hold `dataset`'s candidates for silver's step, and with `write` write `table`'s
        files of them (on `con`) on the silver thread, in the order started."""
        files: Future[Written | None]
        if write:
            if self._pool is None:
                # one thread, kept: its opened tables stay warm from batch to batch
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="silver-ahead")
            files = self._pool.submit(silver_merge.write_files, self.root, table, con, batch)
        else:
            files = Future()
            files.set_result(None)
        self._pending[dataset] = Ahead(table, con, batch, files)

    def take(self, dataset: StagedDataset) -> Ahead | None:
        """`dataset`'s write, None when none was started."""
        return self._pending.pop(dataset, None)

    def discard(self, datasets: Iterable[StagedDataset]) -> None:
        """Wait for the writes of `datasets` not taken and remove their files."""
        for dataset in datasets:
            ahead = self._pending.pop(dataset, None)
            if ahead is None:
                continue
            with contextlib.suppress(Exception):  # the batch's own error is the one raised
                written = ahead.written()
                if written is not None:
                    written.discard(self.root, ahead.table)
