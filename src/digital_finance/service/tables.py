"""`GET /v1/tables` and `GET /v1/tables/{layer}/{name}`: the tables, a page at a time.

A page is read at one table version: the first page pins the version it read (the latest,
or `as_of`), and the `next` link carries it, so paging through a table that a batch is
writing meanwhile neither skips nor repeats rows. Filters are pushed down to the Parquet
files (`column:op:value`, ANDed); values are read as the column's type, money as exact
decimals. Money and times come back as strings (`"101.250000"`, ISO-8601 UTC): a JSON
number would pass a price through a binary float in most clients.
"""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from digital_finance.lakehouse.catalog import existing_tables
from digital_finance.lakehouse.layout import TABLES
from digital_finance.lakehouse.storage import Location
from digital_finance.service.problems import ApiError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc

OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge")


def list_tables(root: Location) -> dict[str, Any]:
    """Every existing table with its layer, version, rows and last commit."""
    found = []
    for name, info in existing_tables(root).items():
        layer, table = name.split("/", 1)
        found.append(
            {
                "name": f"{layer}.{table}",
                "layer": layer,
                "table": table,
                "version": info.version,
                "rows": info.rows,
                "updated": _time(dt.datetime.fromtimestamp(info.updated_ms / 1000, dt.UTC)),
            }
        )
    return {"tables": found}


def read_page(
    root: Location,
    layer: str,
    name: str,
    *,
    columns: str | None,
    filters: list[str],
    limit: int,
    offset: int,
    as_of: int | None,
    path: str,
) -> dict[str, Any]:
    """One page of a table's rows, with the link to the next page (or null)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from digital_finance.engines.embedded.delta_reads import arrow_dataset

    table = f"{layer}/{name}"
    if table not in TABLES.all():
        known = ", ".join(t.replace("/", ".") for t in TABLES.all())
        raise ApiError(404, f"no table {layer}.{name}; the tables are {known}")
    where = root.child(table)
    try:
        delta = DeltaTable(where.uri, storage_options=where.storage_options)
    except TableNotFoundError:
        raise ApiError(404, f"{layer}.{name} does not exist yet: no batch has written it") from None
    if as_of is not None and as_of != delta.version():
        # checked first: delta-rs looks for a version past the latest for as long as it takes
        if as_of > delta.version():
            raise ApiError(404, f"{layer}.{name} has no version {as_of} (latest {delta.version()})")
        try:
            delta.load_as_version(as_of)
        except Exception:
            raise ApiError(404, f"{layer}.{name} has no version {as_of} any more") from None
    dataset = arrow_dataset(delta)
    schema = dataset.schema
    chosen = _columns(columns, schema)
    condition = _condition(filters, schema)
    scanner = dataset.scanner(columns=chosen, filter=condition)
    got = scanner.head(offset + limit + 1)
    rows = got.slice(offset, limit)
    version = delta.version()
    more = got.num_rows > offset + limit
    query: dict[str, Any] = {"as_of": version, "offset": offset + limit, "limit": limit}
    if columns:
        query["columns"] = columns
    following = f"{path}?{urlencode(query)}" + "".join(
        f"&{urlencode({'filter': f})}" for f in filters
    )
    return {
        "table": f"{layer}.{name}",
        "version": version,
        "columns": chosen,
        "rows": [_row(r) for r in rows.to_pylist()],
        "next": following if more else None,
    }


def _columns(given: str | None, schema: pa.Schema) -> list[str]:
    if not given:
        return list(schema.names)
    chosen = [c.strip() for c in given.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in schema.names]
    if unknown:
        raise ApiError(400, f"no column {unknown[0]!r}; the columns are {', '.join(schema.names)}")
    return chosen


def _condition(filters: list[str], schema: pa.Schema) -> pc.Expression | None:
    import pyarrow.compute as pc

    condition: pc.Expression | None = None
    for item in filters:
        column, _, rest = item.partition(":")
        op, _, text = rest.partition(":")
        if column not in schema.names:
            raise ApiError(400, f"filter {item!r}: no column {column!r}")
        if op not in OPERATORS:
            raise ApiError(
                400, f"filter {item!r}: the operator must be one of {', '.join(OPERATORS)}"
            )
        value = _typed(text, schema.field(column).type, item)
        field = pc.field(column)
        term = {
            "eq": field == value,
            "ne": field != value,
            "lt": field < value,
            "le": field <= value,
            "gt": field > value,
            "ge": field >= value,
        }[op]
        condition = term if condition is None else condition & term
    return condition


def _typed(text: str, kind: pa.DataType, item: str) -> Any:
    import pyarrow as pa

    try:
        if pa.types.is_integer(kind):
            return pa.scalar(int(text), kind)
        if pa.types.is_decimal(kind):
            return pa.scalar(Decimal(text), kind)
        if pa.types.is_timestamp(kind):
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            return pa.scalar(moment, kind)
        if pa.types.is_boolean(kind):
            if text not in ("true", "false"):
                raise ValueError(text)
            return pa.scalar(text == "true")
        if pa.types.is_floating(kind):
            return pa.scalar(float(text), kind)
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return pa.scalar(text, kind)
    except (ValueError, InvalidOperation, OverflowError, pa.ArrowInvalid):
        raise ApiError(400, f"filter {item!r}: {text!r} is not a value of type {kind}") from None
    raise ApiError(400, f"filter {item!r}: columns of type {kind} cannot be filtered")


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _value(v) for k, v in row.items()}


def _value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, dt.datetime):
        return _time(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, dict):
        return _row(v)
    if isinstance(v, list):
        return [_value(x) for x in v]
    return v


def _time(v: dt.datetime) -> str:
    if v.tzinfo is None:
        v = v.replace(tzinfo=dt.UTC)
    return v.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
