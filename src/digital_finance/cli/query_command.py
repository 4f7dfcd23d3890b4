"""`digital-finance query`: one read-only SELECT over the tables, printed or written to a file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from digital_finance.cli.console import console, err_console, fail
from digital_finance.lakehouse.storage import StorageError, location

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("table", "csv", "json")
_MIN_COLUMN = 8  # characters a column needs to be readable in a table


def run_query(
    sql: str, root: str, out: Path | None, as_of: int | None, limit: int, fmt: str = "table"
) -> None:
    """Run `sql` with every table registered; print or write the result."""
    from digital_finance.config import ConfigError, load_config
    from digital_finance.lakehouse.read_only import (
        QueryRefusedError,
        read_only_connection,
        run_select,
    )
    from digital_finance.sinks.export import check_suffix

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    try:
        # storage options and their secrets from the environment (docs/STORAGE.md)
        config = load_config(None)
        where = location(root, config.plain_storage_options())
        if out is not None:
            check_suffix(out)  # before the query runs, not after
    except (StorageError, ConfigError, ValueError) as exc:
        fail(str(exc))
    if where.is_local and not where.path.exists():
        fail(f"{root} does not exist; run `digital-finance run` first or pass --output")
    if out is not None and where.is_local and out.resolve().is_relative_to(where.path.resolve()):
        fail(f"--out {out} is inside the lakehouse {root}; write the result somewhere else")
    try:
        with read_only_connection(
            where, as_of, memory_limit=config.memory_limit, threads=config.threads
        ) as (con, names):
            # one row more than printed, to say that there are more
            wanted = None if out is not None or fmt != "table" else limit + 1
            result = run_select(con, sql, names, limit=wanted)
    except QueryRefusedError as exc:
        fail(str(exc))
    from digital_finance.runs.abandon import unfinished_batch, unfinished_note

    unfinished = unfinished_batch(where)
    if unfinished is not None:  # on stderr: the result itself stays clean
        err_console.print(unfinished_note(unfinished), markup=False)
    if out is not None:
        from digital_finance.sinks.export import write_file

        write_file(result, out)
        console.print(f"wrote {out} ({result.num_rows:,} rows)")
        return
    if fmt == "csv":
        _print_csv(result)
    elif fmt == "json":
        from digital_finance.sinks.export import json_lines

        for line in json_lines(result):
            sys.stdout.write(line + "\n")
    else:
        _print_table(result, limit)


def _print_csv(result: pa.Table) -> None:
    import pyarrow.csv as pacsv

    from digital_finance.sinks.export import escape_formulas

    sink = sys.stdout.buffer
    pacsv.write_csv(escape_formulas(result), sink)
    sink.flush()


def _print_table(result: pa.Table, limit: int) -> None:
    """A table when the columns fit the terminal; one record per block when they do not."""
    more = result.num_rows > limit
    shown = result.slice(0, limit)
    columns = shown.column_names
    # by position: a result may repeat a column name
    rows = list(zip(*(col.to_pylist() for col in shown.columns), strict=True))
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    width = console.width
    needed = sum(
        min(max([len(c)] + [len(r[i]) for r in cells]), 40) + 3 for i, c in enumerate(columns)
    )
    if needed <= width or len(columns) * _MIN_COLUMN > width * 3:
        table = Table()
        for col in columns:
            table.add_column(col, overflow="ellipsis", no_wrap=True, max_width=40)
        for row in cells:
            table.add_row(*row)
        console.print(table)
    else:
        label = max(len(c) for c in columns)
        for n, row in enumerate(cells, start=1):
            console.print(f"-[ record {n} ]" + "-" * max(0, min(width, 60) - 14), markup=False)
            for col, value in zip(columns, row, strict=True):
                console.print(f"{col:<{label}} | {value}", markup=False, soft_wrap=True)
        if cells:
            console.print(
                f"({len(columns)} columns do not fit {width} characters: one record per block; "
                "--format csv or json for all of it)",
                markup=False,
            )
    if more:
        console.print(
            f"(first {limit:,} rows; --limit N for more, or --out FILE for all of them)",
            markup=False,
        )
