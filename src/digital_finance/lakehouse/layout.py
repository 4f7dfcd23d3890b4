"""Where each table lives under the output root (shared/CONTRACT.md, "Tables on disk")."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the Delta app id under which every engine records the batch a commit belongs to
APP_ID = "digital-finance"
# the commitInfo tag that names a commit's batch in the table history: delta-rs writes it as
# a commitInfo key, Delta Spark (whose Python API sets only `userMetadata`) as
# `userMetadata = "<key>=<batch>"`; `tagged_batch` reads either
BATCH_TAG = "digital_finance.batch_id"


def batch_user_metadata(batch_id: int, write: str | None = None) -> str:
    """The `userMetadata` that tags a Delta Spark commit with its batch, and with the write
    that made it when `write` names one (`<key>=<batch>;write=<write>`)."""
    tag = f"{BATCH_TAG}={batch_id}"
    return tag if write is None else f"{tag};write={write}"


def commit_info(table: Path, version: int) -> dict[str, Any]:
    """The commitInfo of a local table's commit (empty when it has none or is gone), read
    from the log's JSON as either engine wrote it."""
    try:
        with (table / "_delta_log" / f"{version:020d}.json").open(encoding="utf-8") as commit:
            for line in commit:  # one action a line; both engines write commitInfo first
                action = json.loads(line)
                if "commitInfo" in action:
                    return dict(action["commitInfo"])
    except FileNotFoundError:
        pass
    return {}


def tagged_batch(commit_info: Mapping[str, Any]) -> int | None:
    """The batch a commit of the table history was tagged with, by either engine."""
    tag = commit_info.get(BATCH_TAG)
    meta = commit_info.get("userMetadata")
    if tag is None and isinstance(meta, str) and meta.startswith(BATCH_TAG + "="):
        tag = meta[len(BATCH_TAG) + 1 :].split(";", 1)[0]
    try:
        return None if tag is None else int(tag)
    except ValueError:
        return None


@dataclass(frozen=True)
class TableLayout:
    """Relative paths of the lakehouse tables."""

    gold: str = "gold/stock_fund_holdings"
    runs: str = "_system/pipeline_runs"
    batches: str = "_system/batches"
    forgotten: str = "_system/forgotten"

    def bronze(self, dataset: str) -> str:
        """Bronze table of a dataset."""
        return f"bronze/{dataset}"

    def silver(self, dataset: str) -> str:
        """Silver table of a dataset."""
        return f"silver/{dataset}"

    def quarantine(self, dataset: str) -> str:
        """Quarantine table of a dataset."""
        return f"quarantine/{dataset}"

    def all(self) -> list[str]:
        """Every table a run writes, in data-flow order."""
        tables: list[str] = []
        for kind in (self.bronze, self.quarantine, self.silver):
            tables += [kind("stocks"), kind("mutual_funds")]
        return [*tables, self.gold, self.runs, self.batches]

    def every(self) -> list[str]:
        """Every table, with those only some commands make (`forget`'s)."""
        return [*self.all(), self.forgotten]


TABLES = TableLayout()

# Bronze's columns without min/max statistics in any engine's commits: a record's text is
# never filtered on, and its statistics were a fifth of Delta Spark's bronze write at 1M
BRONZE_UNINDEXED = frozenset({"record"})


def table_uri(root: str, table: str) -> str:
    """A table's location under an output root that is a folder or a URI (`abfss://...`)."""
    return root.rstrip("/") + "/" + table
