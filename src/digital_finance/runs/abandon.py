"""Abandon an interrupted batch: every table back to where it was before the batch began.

A batch whose input files are gone or changed cannot be finished from the files, and a
batch that bronze does not fully hold cannot be finished from bronze. Abandoning it, under
the commit lock, restores each table that the batch already wrote to the version just
before the batch's first commit there (a Delta RESTORE: a new commit, so the batch's rows
stay readable with `--as-of`), and logs the batch as `abandoned` in `_system/pipeline_runs`.
It is done in two steps, so that an abandon cut short is never mistaken for anything else: an
`abandoning` row first (no run plans while it stands), then the restores, each tagged so that
running the command again skips a table already restored, then the `abandoned` row.
The batch id is never used again. Its files count as never ingested: the next run that is
given them reads them as new.

An interrupted batch is always the newest one (the next run finishes it before it plans
anything new), so no later batch can have built on what is rolled back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from digital_finance.errors import TerminalError
from digital_finance.lakehouse import orphans
from digital_finance.lakehouse.layout import TABLES, tagged_batch
from digital_finance.lakehouse.storage import Location
from digital_finance.lakehouse.system_rows import ABANDONED, ABANDONING
from digital_finance.runs.failpoints import crash_point

log = logging.getLogger(__name__)

_ROLLBACK_TAG = "digital_finance.abandoned_batch"  # commitInfo key of a restore by abandon


class AbandonError(TerminalError):
    """The batch cannot be abandoned; the message says why and what to do instead."""


@dataclass(frozen=True)
class TableRollback:
    """What abandoning did to one table."""

    table: str
    restored_to: int | None  # the version restored; None: the batch created it, now emptied
    rows_before: int
    rows_after: int


@dataclass
class Abandoned:
    """The account of an abandoned batch."""

    batch_id: int
    rolled_back: list[TableRollback] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)  # tables the batch never wrote
    earlier: list[str] = field(default_factory=list)  # restored by an abandon cut short
    files: list[str] = field(default_factory=list)  # its files: read as new when given again
    already: bool = False  # the batch was abandoned before; nothing was done
    resumed: bool = False  # an abandon cut short was finished


def batch_commits(history: list[dict[str, Any]], batch_id: int) -> list[int]:
    """The versions of a table's history that belong to `batch_id`, oldest first."""
    return sorted(int(e["version"]) for e in history if tagged_batch(e) == batch_id)


def abandon_batch(root: Location, batch_id: int, runs_engine: str = "embedded") -> Abandoned:
    """Roll the lakehouse back from an unfinished batch; the caller holds the commit lock."""
    from digital_finance.engines.embedded import system_tables

    past = system_tables.history(root)
    planned, succeeded, abandoned = past.planned, past.succeeded, past.abandoned
    files = sorted({pf.file.path for b, pf in planned if b == batch_id})
    known = sorted({b for b, _ in planned})
    if batch_id in abandoned:
        return Abandoned(batch_id, files=files, already=True)
    cut_short = batch_id in past.abandoning
    if batch_id not in known:
        listed = ", ".join(str(b) for b in known[-5:]) or "none"
        raise AbandonError(f"there is no batch {batch_id} (the latest batches: {listed})")
    if batch_id in succeeded:
        raise AbandonError(
            f"batch {batch_id} finished; only an interrupted batch can be abandoned "
            "(read an older state of a table with `query --as-of VERSION`)"
        )
    later = [b for b in known if b > batch_id and b not in abandoned]
    if later:
        raise AbandonError(
            f"batch {batch_id} is not the newest batch ({later[-1]} came after it); "
            "only the newest interrupted batch can be abandoned"
        )
    account = Abandoned(batch_id, files=files, resumed=cut_short)
    if not cut_short:
        system_tables.log_abandoned(
            root, batch_id, ABANDONING, "abandon begun", datetime.now(UTC), runs_engine
        )
    for table in TABLES.all():
        if table.startswith("_system/"):
            continue
        crash_point(f"abandon_{table}")
        rollback = _roll_back(root, table, batch_id)
        if rollback is None:
            account.untouched.append(table)
        elif rollback == "earlier":
            account.earlier.append(table)
        else:
            account.rolled_back.append(rollback)
    # files the batch wrote and never committed (a table's first files, written before the
    # commit that creates it) are garbage now that the batch is given up
    orphans.sweep(root)
    system_tables.log_abandoned(
        root, batch_id, ABANDONED, _summary(account), datetime.now(UTC), runs_engine
    )
    log.info("batch %d abandoned", batch_id, extra={"batch_id": batch_id})
    return account


def _roll_back(
    root: Location, table: str, batch_id: int
) -> TableRollback | Literal["earlier"] | None:
    from deltalake import CommitProperties, DeltaTable
    from deltalake.exceptions import TableNotFoundError

    where = root.child(table)
    try:
        dt = DeltaTable(where.uri, storage_options=where.storage_options)
    except TableNotFoundError:
        return None
    history = dt.history()
    versions = batch_commits(history, batch_id)
    if not versions:
        return None
    if any(str(e.get(_ROLLBACK_TAG)) == str(batch_id) for e in history):
        return "earlier"  # restored by an abandon that was cut short after it
    before = _rows(dt)
    first = versions[0]
    tagged = CommitProperties(custom_metadata={_ROLLBACK_TAG: str(batch_id)})
    if first == 0:  # the batch created the table: it is emptied, its schema kept
        dt.delete(commit_properties=tagged)
        restored: int | None = None
    else:
        dt.restore(first - 1, commit_properties=tagged)
        restored = first - 1
    dt = DeltaTable(where.uri, storage_options=where.storage_options)
    return TableRollback(table, restored, before, _rows(dt))


def _rows(dt: Any) -> int:
    actions = dt.get_add_actions(flatten=True)
    if not len(actions):
        return 0
    return int(sum(v or 0 for v in actions.column("num_records").to_pylist()))


def _summary(account: Abandoned) -> str:
    parts = [
        f"{r.table} back to version {r.restored_to}"
        if r.restored_to is not None
        else f"{r.table} emptied"
        for r in account.rolled_back
    ]
    return "abandoned by `digital-finance batch abandon`: " + ("; ".join(parts) or "no table")


def unfinished_batch(root: Location) -> int | None:
    """The batch that was claimed and neither finished nor abandoned, if there is one."""
    from digital_finance.engines.embedded import system_tables

    planned, succeeded, abandoned = (lambda h: (h.planned, h.succeeded, h.abandoned))(
        system_tables.history(root)
    )
    open_ = sorted({b for b, _ in planned} - succeeded - abandoned)
    return open_[-1] if open_ else None


def unfinished_note(batch_id: int) -> str:
    """What `tables` and `query` say of a lakehouse with an unfinished batch."""
    return (
        f"note: batch {batch_id} is unfinished (interrupted): some tables may hold part of it. "
        f"Run the same `digital-finance run` again to finish it, or "
        f"`digital-finance batch abandon {batch_id}` to give it up."
    )
