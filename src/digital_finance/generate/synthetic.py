"""Realistic synthetic input for demos, tests and benchmarks.

`generate` writes stock quotes and mutual-fund holdings as the contract's sources deliver
them: several NDJSON files, one gzip file, one pretty-printed JSON-array file and one file with
a byte-order mark and CRLF line ends; exact duplicates, late updates, stale replays and ties on
the event time; every accepted event-time form; a small share of records that break each rule
of the contract; blank lines and unknown fields. Because every record is made on purpose, the
generator knows the exact outcome: how many records bronze must hold, which quarantine reason
each bad record gets, how many rows silver and gold must have. That is written next to the data
as `expected.json`, and the pipeline's end-to-end tests assert against it.

Records are written as pre-formatted text (no `json.dumps` per record), so a million stock
records take a few seconds. Output is byte-for-byte deterministic for a seed. The parts live
next to this module: `plan` (the files), `clock` (event times), `values` (field values),
`records` (the maker base), `stocks` and `funds` (the two datasets).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from digital_finance.generate.clock import _Clock
from digital_finance.generate.funds import _Funds
from digital_finance.generate.plan import _plan_files, _write_file
from digital_finance.generate.records import _K, _Maker
from digital_finance.generate.stocks import _Stocks

STOCKS: Final = "stocks"
MUTUAL_FUNDS: Final = "mutual_funds"

_PROGRESS_STEP: Final = 100_000


@dataclass(frozen=True)
class GenerateReport:
    """What `generate` wrote and what the pipeline must make of it.

    `records` counts the non-empty records per dataset (bronze rows), `invalid` the records
    each quarantine reason must catch (the primary, first reason), `distinct_valid_keys` the
    silver rows per dataset. `gold_rows` is the size of `stock_fund_holdings` and
    `unmatched_holdings` the silver fund holdings whose company has no stock (the
    referential-integrity warnings). `blank_lines` counts the ignored empty or white-space
    lines per dataset.
    """

    files: tuple[Path, ...]
    records: dict[str, int]
    invalid: dict[str, dict[str, int]]
    distinct_valid_keys: dict[str, int]
    gold_rows: int = 0
    unmatched_holdings: int = 0
    blank_lines: dict[str, int] = field(default_factory=dict)
    seed: int = 0

    def to_json(self, root: Path | None = None) -> dict[str, object]:
        """The report as plain JSON data; file paths relative to `root` when given."""
        files = [(p.relative_to(root) if root is not None else p).as_posix() for p in self.files]
        return {
            "seed": self.seed,
            "files": files,
            "records": dict(self.records),
            "invalid": {k: dict(v) for k, v in self.invalid.items()},
            "quarantine": {k: sum(v.values()) for k, v in self.invalid.items()},
            "distinct_valid_keys": dict(self.distinct_valid_keys),
            "gold_rows": self.gold_rows,
            "unmatched_holdings": self.unmatched_holdings,
            "blank_lines": dict(self.blank_lines),
        }


# --------------------------------------------------------------------------------------------
# Writing a dataset


@dataclass
class _Written:
    """The files written for one dataset and the blank lines spread among them."""

    files: list[Path]
    blank_lines: int


# The blank lines spread among the records, which bronze must skip.
_BLANKS: Final = ("", "   ", "\t", " ")


def _write_dataset(
    maker: _Maker[_K],
    directory: Path,
    n: int,
    rng: random.Random,
    progress: Callable[[int], None],
) -> _Written:
    """Write `n` records of `maker` as the planned files in `directory`, with blank lines."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("part-*"):
        stale.unlink()
    files: list[Path] = []
    blank_lines = 0
    rand = maker.rand
    record = maker.record
    for plan in _plan_files(n):
        array = plan.form == "array"
        blanks: set[int] = set()
        if not array and plan.count > 1:
            k = min(plan.count - 1, 1 + plan.count // 40_000)
            blanks = set(rng.sample(range(1, plan.count), k))
        blank_lines += len(blanks)
        lines: list[str] = []
        append = lines.append
        done = 0
        while done < plan.count:
            stop = min(plan.count, done + _PROGRESS_STEP)
            for j in range(done, stop):
                if blanks and j in blanks:
                    append(_BLANKS[j % len(_BLANKS)])
                # The first line of an NDJSON file is a good record, so that a file can never
                # be mistaken for a JSON array by its first character.
                parts = record(rand() if j or array else 1.0, array)
                if isinstance(parts, str):
                    append(parts)
                elif array:
                    append("{\n    " + ",\n    ".join(parts) + "\n  }")
                else:
                    append("{" + ", ".join(parts) + "}")
            progress(stop - done)
            done = stop
        path = directory / plan.name
        _write_file(path, plan, lines)
        files.append(path)
    return _Written(files, blank_lines)


def generate(
    out_dir: Path,
    n_stocks: int,
    n_funds: int,
    seed: int = 42,
    on_progress: Callable[[int], None] | None = None,
) -> GenerateReport:
    """Write `n_stocks` stock records and `n_funds` fund-holding records under `out_dir`.

    Files go to `out_dir/stocks/` and `out_dir/mutual_funds/` (files named `part-*` left there
    by an earlier run are removed first), and the report to `out_dir/expected.json`. The same
    arguments always write the same bytes. `on_progress` is called with the number of records
    written so far, about every 100,000 records and once at the end.
    """
    if n_stocks < 0 or n_funds < 0:
        raise ValueError("record counts must not be negative")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written_so_far = 0

    def progress(step: int) -> None:
        nonlocal written_so_far
        written_so_far += step
        if on_progress is not None:
            on_progress(written_so_far)

    # Not for security: a seeded generator is the point, the output must repeat.
    rng = random.Random(f"digital-finance/{seed}/stocks")  # noqa: S311
    stocks = _Stocks(rng, _Clock(rng))
    stock_files = _write_dataset(stocks, out_dir / STOCKS, n_stocks, rng, progress)

    rng = random.Random(f"digital-finance/{seed}/funds")  # noqa: S311
    funds = _Funds(rng, _Clock(rng), stocks.listings)
    fund_files = _write_dataset(funds, out_dir / MUTUAL_FUNDS, n_funds, rng, progress)

    report = GenerateReport(
        files=tuple(stock_files.files + fund_files.files),
        records={STOCKS: n_stocks, MUTUAL_FUNDS: n_funds},
        invalid={
            STOCKS: dict(sorted(stocks.invalid_counts.items())),
            MUTUAL_FUNDS: dict(sorted(funds.invalid_counts.items())),
        },
        distinct_valid_keys={STOCKS: stocks.base_count, MUTUAL_FUNDS: funds.base_count},
        gold_rows=funds.gold_rows,
        unmatched_holdings=funds.unmatched,
        blank_lines={STOCKS: stock_files.blank_lines, MUTUAL_FUNDS: fund_files.blank_lines},
        seed=seed,
    )
    expected = json.dumps(report.to_json(out_dir), indent=2, ensure_ascii=False)
    (out_dir / "expected.json").write_text(expected + "\n", encoding="utf-8")
    if on_progress is not None and written_so_far == 0:
        on_progress(0)
    return report
