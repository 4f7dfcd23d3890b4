"""A Spark write finds its own commit in a local table's log by its tag, among the newest."""

from __future__ import annotations

import json
from pathlib import Path

from digital_finance.engines.spark.delta_writes import _tagged_in_log


def _commit(log: Path, version: int, tag: str, rows: int) -> None:
    info = {"commitInfo": {"operation": "WRITE", "userMetadata": tag,
                           "operationMetrics": {"numOutputRows": str(rows)}}}  # fmt: skip
    add = {"add": {"path": f"part-{version}.parquet", "dataChange": True}}
    (log / f"{version:020d}.json").write_text(json.dumps(info) + "\n" + json.dumps(add) + "\n")


def test_the_tagged_commit_is_found_among_the_newest_and_only_there(tmp_path: Path) -> None:
    log = tmp_path / "_delta_log"
    log.mkdir()
    table = tmp_path
    for version in range(30):
        _commit(log, version, f"batch=1;write={version}", version * 10)
    (log / "00000000000000000029.crc").write_text("{}")  # not a commit
    assert _tagged_in_log(table, "batch=1;write=29") == {"numOutputRows": "290"}
    assert _tagged_in_log(table, "batch=1;write=10") == {"numOutputRows": "100"}
    # older than the newest twenty: as Delta's history(20), not found (a skipped write)
    assert _tagged_in_log(table, "batch=1;write=9") is None
    assert _tagged_in_log(table, "batch=1;write=unknown") is None
