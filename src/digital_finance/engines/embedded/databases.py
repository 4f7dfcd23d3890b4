"""DuckDB databases for a runner's batches, kept for the next batch when one is done.

Opening an in-memory DuckDB database costs 40 to 60 ms and closing it 5 to 10 ms, twice a batch
(staging, gold): a tenth of what a stream's one-second batch may take. A long-lived runner
(a stream, the HTTP service's ingester, a notebook) therefore lends its batches databases it
keeps: one returned clean (every table and view it made dropped) is lent again. A database
that spilled to disk cannot take the next batch's spill folder (DuckDB refuses to switch
folders once one was used), and one whose batch failed may hold a busy cursor: both are
closed, and the next batch gets a new one.

A database is cleared on a thread of its own once its batch is done (10 to 30 ms after a
1M-record batch, dropping what it staged): the run log (after gold's database is given
back) and the CLI's report (after staging's is) do not wait for it, and the next `lend`
waits for it rather than opening another.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from digital_finance.contract.compiled_sql import ident

KEPT = 2  # staging's and gold's, which overlap within a batch


def connect(temp_dir: Path, memory_limit: str, threads: int | None) -> duckdb.DuckDBPyConnection:
    """A new DuckDB database for one batch, spilling to `temp_dir`."""
    temp_dir.mkdir(parents=True, exist_ok=True)
    con = _opened(memory_limit, threads)
    con.execute("SET temp_directory = ?", [str(temp_dir)])
    return con


def _opened(memory_limit: str, threads: int | None) -> duckdb.DuckDBPyConnection:
    """A new DuckDB database with the runner's settings, its spill folder not yet set."""
    con = duckdb.connect(":memory:")
    con.execute("SET memory_limit = ?", [memory_limit])
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


class Databases:
    """Lends DuckDB databases with the runner's settings; keeps up to `KEPT` idle ones."""

    def __init__(self, memory_limit: str, threads: int | None) -> None:
        self.memory_limit = memory_limit
        self.threads = threads
        self._idle: list[duckdb.DuckDBPyConnection] = []
        self._warming = False
        self._clearing = 0  # databases being cleared for the next batch
        self._closed = False  # once closed, a database warmed or cleared late is closed too
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a clearing ended

    @contextlib.contextmanager
    def lend(self, temp_dir: Path) -> Iterator[duckdb.DuckDBPyConnection]:
        """A database spilling to `temp_dir` for the block; kept afterwards when it can be."""
        con = self._take(temp_dir)
        succeeded = False
        try:
            yield con
            succeeded = True
        finally:
            with self._lock:
                keep = succeeded and not self._closed and len(self._idle) + self._clearing < KEPT
                if keep:
                    self._clearing += 1
            # not a daemon: one stopped inside DuckDB as the interpreter ends aborts the
            # process ("FATAL: exception not rethrown"); the exit waits for it instead
            if not keep or not _started("duckdb-clear", self._give_back, con):
                if keep:
                    self._ended(clearing=True)
                with contextlib.suppress(duckdb.Error):
                    con.close()

    def _give_back(self, con: duckdb.DuckDBPyConnection) -> None:
        kept = False
        try:
            cleared = _cleared(con)
            with self._lock:
                kept = cleared and not self._closed and len(self._idle) < KEPT
                if kept:
                    self._idle.append(con)
        finally:  # whatever happened, a `lend` waiting for this one must go on
            self._ended(clearing=True)
            if not kept:
                with contextlib.suppress(duckdb.Error):
                    con.close()

    def _ended(self, *, clearing: bool) -> None:
        """A clearing (or else an opening) in flight ended: the waiting `lend`s look again."""
        with self._lock:
            if clearing:
                self._clearing -= 1
            else:
                self._warming = False
            self._changed.notify_all()

    def warm(self) -> None:
        """Open a database on a thread of its own when none is idle, for the next `lend`
        (which waits for it): a one-batch run (the CLI) otherwise opened staging's and gold's,
        30 to 40 ms each, on the batch's path."""
        with self._lock:
            if self._idle or self._warming:
                return
            self._warming = True

        def opened() -> None:
            con: duckdb.DuckDBPyConnection | None = None
            try:
                con = _opened(self.memory_limit, self.threads)
            except duckdb.Error:  # `lend` opens one itself, and says why if it cannot
                pass
            finally:
                with self._lock:
                    if con is not None and len(self._idle) < KEPT and not self._closed:
                        self._idle.append(con)
                        con = None
                self._ended(clearing=False)
            if con is not None:
                con.close()

        if not _started("duckdb-warm", opened):  # not a daemon: as in `lend`
            self._ended(clearing=False)

    def _take(self, temp_dir: Path) -> duckdb.DuckDBPyConnection:
        temp_dir.mkdir(parents=True, exist_ok=True)
        while True:
            with self._lock:
                while not self._idle and (self._clearing or self._warming):
                    self._changed.wait()  # sooner than opening another
                if not self._idle:
                    break
                con = self._idle.pop()
            try:
                con.execute("SET temp_directory = ?", [str(temp_dir)])
                return con
            except duckdb.Error:  # it spilled once: its folder is fixed for its life
                with contextlib.suppress(duckdb.Error):
                    con.close()
        return connect(temp_dir, self.memory_limit, self.threads)

    def close(self) -> None:
        """Close the idle databases."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._closed = True
        for con in idle:
            with contextlib.suppress(duckdb.Error):
                con.close()


def _started(name: str, work: Callable[..., None], *args: object) -> bool:
    """Whether a thread doing `work(*args)` could be started: none can while the interpreter
    shuts down, or when the process has no threads left."""
    try:
        threading.Thread(target=work, args=args, name=name).start()
    except RuntimeError:
        return False
    return True


def _cleared(con: duckdb.DuckDBPyConnection) -> bool:
    """Drop every table and view the batch made; False when that is not possible."""
    try:
        made = con.execute(
            "SELECT 'TABLE', database_name, schema_name, table_name FROM duckdb_tables() "
            "WHERE NOT internal UNION ALL "
            "SELECT 'VIEW', database_name, schema_name, view_name FROM duckdb_views() "
            "WHERE NOT internal"
        ).fetchall()
        for kind, database, schema, name in made:
            con.execute(f"DROP {kind} IF EXISTS {ident(database)}.{ident(schema)}.{ident(name)}")
        (left,) = con.execute(
            "SELECT (SELECT count(*) FROM duckdb_tables() WHERE NOT internal) "
            "+ (SELECT count(*) FROM duckdb_views() WHERE NOT internal)"
        ).fetchall()
        return int(left[0]) == 0
    except duckdb.Error:
        return False
