"""Export silver and gold as plain Parquet or CSV files under `<output>/export/`.

CSV cells that start with `= + - @` (or a tab / carriage return) are text a spreadsheet would
run as a formula; they are prefixed with a single quote (OWASP's advice). Numbers are never
touched: a negative number is data, not a formula.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from digital_finance.lakehouse.scratch import scratch_folder
from digital_finance.lakehouse.storage import Location

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EXPORTED = ("silver/stocks", "silver/mutual_funds", "gold/stock_fund_holdings")


def escape_formulas(table: pa.Table) -> pa.Table:
    """Neutralise text cells a spreadsheet would evaluate."""
    import pyarrow.compute as pc

    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            risky = pc.starts_with(column, _FORMULA_START[0])
            for prefix in _FORMULA_START[1:]:
                risky = pc.or_(risky, pc.starts_with(column, prefix))
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        columns.append(column)
    return pa.table(columns, names=table.column_names)


FILE_SUFFIXES = (".csv", ".parquet", ".json", ".jsonl")


def check_suffix(path: Path) -> None:
    """Refuse, before any work, a file ending `write_file` cannot write."""
    if path.suffix not in FILE_SUFFIXES:
        raise ValueError(
            f"{path}: the file's ending says its format; use one of {', '.join(FILE_SUFFIXES)}"
        )


def write_file(table: pa.Table, path: Path) -> None:
    """Write one Arrow table as .parquet, .csv or JSON lines (.json, .jsonl) by its ending."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    check_suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    elif path.suffix == ".csv":
        pacsv.write_csv(escape_formulas(table), path)
    else:
        with path.open("w", encoding="utf-8") as f:
            for line in json_lines(table):
                f.write(line + "\n")


def json_lines(table: pa.Table) -> Iterator[str]:
    """One JSON object per row; decimals and times as strings, so no value loses digits."""
    import json

    for row in table.to_pylist():
        yield json.dumps(row, default=str, ensure_ascii=False)


def export_tables(root: Location, fmt: str) -> list[str]:
    """Write the current silver and gold tables under `export/`; returns where they went.

    On a remote lakehouse each file is written locally first and then uploaded.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from digital_finance.engines.embedded.delta_reads import arrow_rows

    written = []
    for name in EXPORTED:
        where = root.child(name)
        try:
            table = arrow_rows(DeltaTable(where.uri, storage_options=where.storage_options))
        except TableNotFoundError:
            continue
        relative = f"export/{name.replace('/', '_')}.{fmt}"
        if root.is_local:
            write_file(table, root.path / relative)
        else:
            with scratch_folder(root, f"export-{uuid.uuid4().hex}") as folder:
                local = folder / Path(relative).name
                write_file(table, local)
                root.upload(local, relative)
        written.append(root.child(relative).uri)
    return written
