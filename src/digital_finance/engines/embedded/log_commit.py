"""A Delta commit written as the log's JSON, for actions delta-rs cannot commit.

delta-rs 1.6's `create_write_transaction` takes adds without deletion vectors only, so the
commits that carry them (`row_marks`) are written here: the next version's file is made
only if no other writer made it first (a hard link of a finished temporary file, which
fails when the name exists), the same put-if-absent delta-rs uses on a local disk. Every
table write happens under the commit lock, so a conflict means a writer that ignores the
lock; it is refused, never overwritten.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from digital_finance.lakehouse.layout import APP_ID, BATCH_TAG


class CommitConflict(RuntimeError):
    """Another writer committed the version first."""


def commit(
    table: Path,
    dt: DeltaTable,
    actions: list[dict[str, Any]],
    batch_id: int,
    operation: str,
    info: dict[str, str] | None = None,
) -> int:
    """Commit `actions` to the local table at `table` (opened as `dt`, at its latest
    version) as the next version, tagged with the batch (and `info` in its commitInfo);
    returns the version."""
    version = dt.version() + 1
    now_ms = int(time.time() * 1000)
    described: dict[str, Any] = {
        "timestamp": now_ms,
        "operation": operation,
        "operationParameters": {},
        "isBlindAppend": False,
        "engineInfo": "digital-finance",
        BATCH_TAG: str(batch_id),
        **(info or {}),
    }
    lines = [
        {"commitInfo": described},
        {"txn": {"appId": APP_ID, "version": batch_id, "lastUpdated": now_ms}},
        *actions,
    ]
    log = table / "_delta_log"
    target = log / f"{version:020d}.json"
    temporary = log / f".{target.name}.{uuid.uuid4().hex}.tmp"
    with temporary.open("w", encoding="utf-8") as out:
        out.write("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise CommitConflict(
            f"version {version} of {table} was committed by another writer"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
    dt.update_incremental()
    return version


def add_action(path: str, size: int, modified_ms: int, stats: str,
               vector: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The log's `add` of an unpartitioned file."""
    add: dict[str, Any] = {
        "path": path,
        "partitionValues": {},
        "size": size,
        "modificationTime": modified_ms,
        "dataChange": True,
        "stats": stats,
    }
    if vector is not None:
        add["deletionVector"] = vector
    return {"add": add}


def remove_action(path: str, size: int, vector: dict[str, Any] | None = None) -> dict[str, Any]:
    """The log's `remove` of an unpartitioned file, with the vector its add had."""
    remove: dict[str, Any] = {
        "path": path,
        "deletionTimestamp": int(time.time() * 1000),
        "dataChange": True,
        "extendedFileMetadata": True,
        "partitionValues": {},
        "size": size,
    }
    if vector is not None:
        remove["deletionVector"] = vector
    return {"remove": remove}
