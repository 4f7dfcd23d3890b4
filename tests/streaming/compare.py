"""Two lakehouses hold the same data: every table but for lineage and ingestion columns.

Bronze and quarantine are compared as multisets of what they hold of each record (its text;
the reason and step for quarantine); silver and gold row for row on every column that is not
lineage (`_source_file`, `_line_number`, `_batch_id`, `_ingested_at`, …), `_rescued` kept.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from tests.conftest import REPO
from tests.streaming.messages import Msg, as_files

LINEAGE_KEPT = {"_rescued"}


def _rows(table: Path, columns: list[str] | None = None) -> list[dict[str, Any]]:
    t = DeltaTable(str(table)).to_pyarrow_table()
    keep = columns or [c for c in t.column_names if not c.startswith("_") or c in LINEAGE_KEPT]
    return t.select(keep).to_pylist()


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: repr(sorted(r.items())))


def table_differences(a: Path, b: Path) -> list[str]:
    """What differs between lakehouses `a` and `b` (empty when they hold the same)."""
    problems = []
    for dataset in ("stocks", "mutual_funds"):
        bronze = [
            Counter(r["record"] for r in _rows(x / "bronze" / dataset, ["record"])) for x in (a, b)
        ]
        if bronze[0] != bronze[1]:
            problems.append(
                f"bronze/{dataset}: {sum(bronze[0].values())} vs {sum(bronze[1].values())} rows, {len(bronze[0] - bronze[1])} + {len(bronze[1] - bronze[0])} differ"
            )
        cols = ["reason", "reasons", "raw", "step"]
        quarantine = [
            Counter(repr(sorted(r.items())) for r in _rows(x / "quarantine" / dataset, cols))
            for x in (a, b)
        ]
        if quarantine[0] != quarantine[1]:
            problems.append(
                f"quarantine/{dataset}: {sum(quarantine[0].values())} vs {sum(quarantine[1].values())} rows"
            )
        silver = [_sorted(_rows(x / "silver" / dataset)) for x in (a, b)]
        if silver[0] != silver[1]:
            diff = sum(1 for r in silver[0] if r not in silver[1])
            problems.append(
                f"silver/{dataset}: {len(silver[0])} vs {len(silver[1])} rows, {diff} of the first not in the second"
            )
    gold = [_sorted(_rows(x / "gold" / "stock_fund_holdings")) for x in (a, b)]
    if gold[0] != gold[1]:
        problems.append(f"gold: {len(gold[0])} vs {len(gold[1])} rows")
    return problems


def batch_reference(msgs: list[Msg], folder: Path) -> Path:
    """`digital-finance run` on the messages as files: what a stream of them must give."""
    files = as_files(msgs, folder / "files")
    lake = folder / "reference"
    done = subprocess.run(
        [sys.executable, "-m", "digital_finance", "run", "--stocks", str(files["stocks"]),
         "--funds", str(files["mutual_funds"]), "--output", str(lake)],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return lake


def run_cli(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """A command to its end, with its output."""
    import os

    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
