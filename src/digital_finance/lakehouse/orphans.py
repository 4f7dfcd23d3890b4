"""Data files that no commit of a table refers to: what a writer killed mid-write leaves.

A batch writes its Parquet files and then commits them; a crash in between leaves files that
no version of the table mentions. Readers never see them, but they take space for ever
(VACUUM would only remove them after its retention, seven days by default, together with the
files old versions need). They are removed here by the next run, under the commit lock —
every data file is written under that lock, so no other writer has files in flight — and
only when no commit, in the log or its checkpoints, has ever named them: time travel to any
version keeps working.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from digital_finance.lakehouse.layout import TABLES
from digital_finance.lakehouse.storage import Location

_LOG = "_delta_log"


@dataclass(frozen=True)
class Orphans:
    """What a sweep removed."""

    files: int
    bytes: int


def referenced(table: Path) -> set[str]:
    """Every data file and deletion-vector file (relative path) that a commit or
    checkpoint of the table names."""
    import pyarrow.parquet as pq

    from digital_finance.engines.embedded.deletion_vectors import stored_in

    named: set[str] = set()
    log = table / _LOG
    for entry in sorted(log.iterdir()):
        if entry.name.endswith(".json"):
            with entry.open(encoding="utf-8") as f:
                for line in f:
                    action = json.loads(line)
                    for kind in ("add", "remove"):
                        if kind in action:
                            named.add(unquote(action[kind]["path"]))
                            vector = action[kind].get("deletionVector")
                            if vector and (stored := stored_in(vector)) is not None:
                                named.add(stored)
        elif ".checkpoint" in entry.name and entry.name.endswith(".parquet"):
            columns = pq.read_schema(entry).names
            read = [c for c in ("add", "remove") if c in columns]
            for column in pq.read_table(entry, columns=read).columns:
                for item in column.to_pylist():
                    if item is not None and item.get("path"):
                        named.add(unquote(item["path"]))
                        vector = item.get("deletionVector")
                        if vector and (stored := stored_in(vector)) is not None:
                            named.add(stored)
    return named


def sweep_table(table: Path) -> Orphans:
    """Remove the table's Parquet and deletion-vector files that no commit names; local
    tables only. A folder with files and no log is a first write cut short (a table's files
    are written before the commit that creates it): its files go, and the folder if that
    leaves it empty."""
    if not table.is_dir():
        return Orphans(0, 0)
    logged = (table / _LOG).is_dir()
    named = referenced(table) if logged else set()
    files = size = 0
    for dirpath, dirnames, names in os.walk(table):
        dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
        for name in names:
            vector = name.startswith("deletion_vector_") and name.endswith(".bin")
            if not (name.endswith(".parquet") or vector) or name.startswith(("_", ".")):
                continue
            path = Path(dirpath) / name
            if str(path.relative_to(table)) in named:
                continue
            size += path.stat().st_size
            path.unlink()
            files += 1
    if not logged:
        for dirpath, _, _ in sorted(os.walk(table), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):  # not empty: something else lives there
                os.rmdir(dirpath)
    return Orphans(files, size)


def sweep(root: Location) -> Orphans:
    """Remove unreferenced data files from the data tables of a local lakehouse.

    Only the data tables: every write to them happens under the commit lock. `_system`
    tables are left alone, since a failed run logs its row there without the lock, and a
    file of that row's commit in flight would look unreferenced.
    """
    if not root.is_local:
        return Orphans(0, 0)  # object stores: left to VACUUM (docs/STORAGE.md)
    files = size = 0
    for name in (t for t in TABLES.all() if not t.startswith("_system/")):
        found = sweep_table(root.path / name)
        files += found.files
        size += found.bytes
    return Orphans(files, size)
