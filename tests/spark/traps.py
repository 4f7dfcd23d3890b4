"""Input files holding every trap of the contract, for comparing engines line for line.

Each trap value of the engine-vs-reference property test (number forms, every timestamp form
and offset, the epoch seconds/millis boundary, DST gaps and overlaps, odd types, unknown and
duplicate keys, broken JSON) is put, one per record, into an otherwise valid record. Ties,
exact duplicates, a JSON-array file, a gzip file without `.gz` and a non-UTF-8 line are added.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from digital_finance.contract.schemas import FUNDS, STOCKS, DatasetSpec
from tests.unit.test_engine_matches_reference import EXTRA, GARBAGE, POOLS

BASE = {
    "stocks": {"company_id": "10", "symbol": '"AAPL"', "price": "1.5",
               "timestamp": '"2024-03-15T14:30:00Z"'},
    "mutual_funds": {"fund_id": '"F"', "company_id": "10", "holding_weight": "2.5",
                     "nav": "10.25", "as_of": '"2024-03-15T00:00:00Z"'},
}  # fmt: skip


def _record(spec: DatasetSpec, n: int, field: str | None, value: str | None) -> str:
    values = dict(BASE[spec.name])
    key = spec.key[0]
    values[key] = str(n) if spec.name == "stocks" else f'"F{n}"'
    if field is not None and value is not None:
        values[field] = value
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in values.items()) + "}"


def trap_lines(spec: DatasetSpec) -> list[str]:
    """Every trap value of every field, one record each, then the record-level traps."""
    lines: list[str] = []
    n = 1
    for f in spec.fields:
        for value in POOLS[f.kind]:
            lines.append(_record(spec, n, f.name, value))
            n += 1
        lines.append(_record(spec, n, None, None).replace(f'"{f.name}": ', '"_absent": ', 1))
        n += 1
    for extra in EXTRA:
        lines.append(_record(spec, n, None, None)[:-1] + ", " + extra + "}")
        n += 1
    lines.append(_record(spec, n, None, None)[:-1] + f', "{spec.key[0]}": 1' + "}")  # dup key
    lines += GARBAGE
    lines += ["", "   "]  # blank lines: ignored, counted for line numbers
    return lines


def write_trap_inputs(root: Path) -> tuple[list[Path], list[Path]]:
    """Trap files for both datasets; returns (stock paths, fund paths)."""
    stocks, funds = root / "stocks", root / "funds"
    stocks.mkdir(parents=True)
    funds.mkdir(parents=True)
    body = "\r\n".join(trap_lines(STOCKS)) + "\r\n"
    (stocks / "a_traps.jsonl").write_bytes(b"\xef\xbb\xbf" + body.encode() + b'{"x": "\xff"}\n')
    tie = _record(STOCKS, 1, "timestamp", '"2024-03-15T14:30:00Z"')
    later = _record(STOCKS, 1, "price", '"2.000000"')  # same key, same event time: wins
    # a JSON array, pretty-printed, then an exact duplicate and a tie in a later file
    (stocks / "b_array.json").write_text(
        "[\n  " + ",\n  ".join([tie, tie, later]) + "\n]\n", encoding="utf-8"
    )
    with gzip.open(stocks / "c_gzip_no_suffix.jsonl", "wb") as fh:
        fh.write((_record(STOCKS, 2, "price", "0.000001") + "\n").encode())
    (funds / "a_traps.ndjson").write_text("\n".join(trap_lines(FUNDS)) + "\n", encoding="utf-8")
    with gzip.open(funds / "b.ndjson.gz", "wb") as fh:
        fh.write((_record(FUNDS, 1, "nav", "1.5e3") + "\n").encode())
    return [stocks], [funds]
