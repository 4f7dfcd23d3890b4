"""DuckDB databases for a runner's batches, kept for the next batch when one is done.

Opening an in-memory DuckDB database costs 40 to 60 ms and closing it 5 to 10 ms, twice a batch
(staging, gold): a tenth of what a stream's one-second batch may take. A long-lived runner
(a stream, the HTTP service's ingester, a notebook) therefore lends its batches databases it
keeps: one returned clean (every table and view it made dropped) is lent again. A database
that spilled to disk cannot take the next batch's spill folder (DuckDB refuses to switch
folders once one was used), and one whose batch failed may hold a busy cursor: both are
closed, and the next batch gets a new one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
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
        self._closed = False  # once closed, a database warmed late is closed too
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lend(self, temp_dir: Path) -> Iterator[duckdb.DuckDBPyConnection]:
        """A database spilling to `temp_dir` for the block; kept afterwards when it can be."""
        con = self._take(temp_dir)
        returned = False
        try:
            yield con
            returned = _cleared(con)
        finally:
            if returned:
                with self._lock:
                    if len(self._idle) < KEPT:
                        self._idle.append(con)
                        con = None  # type: ignore[assignment]
            if con is not None:
                with contextlib.suppress(duckdb.Error):
                    con.close()

    def warm(self) -> None:
        """Open a database on a thread of its own when none is idle, for the next `lend`: a
        one-batch run (the CLI) otherwise opened gold's, 30 to 40 ms, on the batch's path."""
        with self._lock:
            if self._idle or self._warming:
                return
            self._warming = True

        def opened() -> None:
            try:
                con = _opened(self.memory_limit, self.threads)
            except duckdb.Error:  # `lend` opens one itself, and says why if it cannot
                return
            finally:
                with self._lock:
                    self._warming = False
            with self._lock:
                if len(self._idle) < KEPT and not self._closed:
                    self._idle.append(con)
                    return
            con.close()

        threading.Thread(target=opened, name="duckdb-warm", daemon=True).start()

    def _take(self, temp_dir: Path) -> duckdb.DuckDBPyConnection:
        temp_dir.mkdir(parents=True, exist_ok=True)
        while True:
            with self._lock:
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
