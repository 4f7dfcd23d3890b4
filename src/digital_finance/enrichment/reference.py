"""Reference tables read once from CSV into Arrow arrays, checked row by row with line numbers.

The arrays travel inside the enrichment when Spark pickles it, so workers never open the file
(and never see a different version of it than the driver checked).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.csv as pacsv

from digital_finance.contract.schemas import MAX_INT64

_DIGITS: Final = re.compile(r"[0-9]{1,19}\Z")  # 2^63-1 has 19 digits
_SHOWN: Final = 5  # problems listed in one message


def _read_columns(path: Path, columns: tuple[str, ...]) -> pa.Table:
    """The named columns of a CSV file, all as text; ValueError if the file will not do."""
    if not path.is_file():
        raise ValueError(f"reference file {path} does not exist")
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string())),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"reference file {path} is not a readable CSV file: {exc}") from exc
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(
            f"reference file {path} lacks column(s) {missing}; its header must name "
            f"{list(columns)} (it has {table.column_names})"
        )
    if table.num_rows == 0:
        raise ValueError(f"reference file {path} has a header but no rows")
    return table.select(list(columns))


def _fail(path: Path, problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        raise ValueError(f"reference file {path}: " + "; ".join(problems[:_SHOWN]) + more)


def load_company_reference(path: Path, column: str) -> tuple[pa.Array, pa.Array]:
    """`company_id` (int64) and `column` (string) of a CSV file, one row per company.

    A company listed twice with the same value is kept once; with different values it is an
    error, as is an id that is not an integer from 1 to 2^63-1 or an empty value. Lines are
    counted from the header, line 1.
    """
    table = _read_columns(path, ("company_id", column))
    ids = table.column(0).to_pylist()
    values = table.column(1).to_pylist()
    seen: dict[int, tuple[str, int]] = {}
    problems: list[str] = []
    for line, (raw_id, raw_value) in enumerate(zip(ids, values, strict=True), start=2):
        text = (raw_id or "").strip()
        value = (raw_value or "").strip()
        if not _DIGITS.match(text) or not 1 <= int(text) <= MAX_INT64:
            problems.append(f"line {line}: company_id {raw_id!r} is not an integer 1..2^63-1")
            continue
        if not value:
            problems.append(f"line {line}: company_id {text} has an empty {column}")
            continue
        company = int(text)
        if company in seen and seen[company][0] != value:
            first, first_line = seen[company]
            problems.append(
                f"company_id {company} has {column} {first!r} (line {first_line}) "
                f"and {value!r} (line {line})"
            )
        seen.setdefault(company, (value, line))
    _fail(path, problems)
    return (
        pa.array(list(seen), pa.int64()),
        pa.array([v for v, _ in seen.values()], pa.string()),
    )
