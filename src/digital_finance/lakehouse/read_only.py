"""SQL over the lakehouse that can only read its tables: for `query` and the reads the API serves.

Two locks, both DuckDB's own. The statement is split by DuckDB's parser and must be exactly
one SELECT (a regex cannot know where a string literal ends). And once the tables are
registered, the connection loses every way out: no file or network access, no extension
loading, no Python-variable scans, and the configuration is locked so a statement cannot turn
any of it back on. The tables reach DuckDB as Arrow datasets read by `deltalake`, so DuckDB
itself never opens a file of the lakehouse, and nothing it runs can write one.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from digital_finance.errors import TerminalError
from digital_finance.lakehouse.catalog import register_tables
from digital_finance.lakehouse.storage import Location

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

# Set before the lock, in this order: the last one freezes every other setting.
_LOCKDOWN = (
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET python_enable_replacements = false",
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)


class QueryRefusedError(TerminalError):
    """Not one read-only SELECT over the tables, or it failed: the message says why."""


def check_statement(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but exactly one SELECT, as DuckDB's own parser reads `sql`."""
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefusedError(f"the SQL does not parse: {exc}") from exc
    if len(statements) != 1:
        raise QueryRefusedError(
            f"query runs exactly one statement; this SQL holds {len(statements)}"
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        name = str(kind).rsplit(".", 1)[-1]
        raise QueryRefusedError(
            f"query only reads: a {name} statement is refused; write one SELECT "
            "(WITH … SELECT, FROM … and PIVOT are SELECTs too)"
        )


@contextmanager
def read_only_connection(
    root: Location,
    as_of: int | None = None,
    *,
    memory_limit: str = "2GB",
    threads: int | None = None,
) -> Iterator[tuple[duckdb.DuckDBPyConnection, list[str]]]:
    """A DuckDB connection that sees the lakehouse's tables (as `schema.table`) and nothing else."""
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET memory_limit = ?", [memory_limit])
        if threads:
            con.execute("SET threads = ?", [int(threads)])
        # a query larger than memory spills to the system's temp folder, never to the lakehouse
        spill = Path(tempfile.gettempdir()) / "digital-finance-query"
        con.execute("SET temp_directory = ?", [str(spill)])
        try:
            names = register_tables(con, root, as_of)
        except ValueError as exc:
            raise QueryRefusedError(str(exc)) from exc
        for setting in _LOCKDOWN:
            con.execute(setting)
        yield con, names
    finally:
        con.close()


def run_select(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    names: list[str],
    *,
    limit: int | None = None,
    timeout_seconds: float | None = None,
) -> pa.Table:
    """Check `sql`, run it and return at most `limit` rows; a failure names the tables.

    With `timeout_seconds` the statement is interrupted when it runs longer, so a caller on
    the network cannot keep a worker busy for ever.
    """
    import duckdb

    check_statement(con, sql)
    timer = threading.Timer(timeout_seconds, con.interrupt) if timeout_seconds else None
    try:
        if timer is not None:
            timer.start()
        relation = con.sql(sql)
        if relation is None:  # pragma: no cover - a SELECT always has a result
            raise QueryRefusedError("the statement returned no result; write a SELECT")
        if limit is not None:
            relation = relation.limit(limit)
        return relation.to_arrow_table()
    except duckdb.InterruptException as exc:
        raise QueryRefusedError(f"the query ran longer than {timeout_seconds:g} s") from exc
    except duckdb.PermissionException as exc:
        raise QueryRefusedError(
            f"{_first_line(exc)}: query reads the lakehouse's tables only "
            f"({', '.join(names) or 'none yet'})"
        ) from exc
    except duckdb.Error as exc:
        raise QueryRefusedError(
            f"{_first_line(exc)}\navailable tables: {', '.join(names) or 'none yet'}"
        ) from exc
    finally:
        if timer is not None:
            timer.cancel()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
