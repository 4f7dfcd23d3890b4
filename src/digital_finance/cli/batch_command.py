"""`digital-finance batch abandon N`: give up an interrupted batch, with an account of it."""

from __future__ import annotations

import uuid

from digital_finance.cli.console import console, err_console, existing_lakehouse, fail


def abandon(root: str, batch_id: int) -> None:
    """Roll every table back from batch `batch_id` under the commit lock and say what changed."""
    from digital_finance.lakehouse import orphans
    from digital_finance.lakehouse.commit_lock import commit_lock
    from digital_finance.runs.abandon import AbandonError, abandon_batch

    where = existing_lakehouse(root)
    try:
        with commit_lock(where).hold(uuid.uuid4().hex, lambda m: err_console.print(m)):
            account = abandon_batch(where, batch_id)
            swept = orphans.sweep(where)
    except AbandonError as exc:
        fail(str(exc))
    if account.already:
        console.print(f"batch {batch_id} was abandoned before; nothing to do")
        return
    finished = " (finishing an abandon that was cut short)" if account.resumed else ""
    console.print(f"batch {batch_id} abandoned{finished}:")
    for r in account.rolled_back:
        where_to = (
            f"back to version {r.restored_to}"
            if r.restored_to is not None
            else "emptied (the batch created it)"
        )
        console.print(f"  {r.table}: {where_to}, {r.rows_before:,} → {r.rows_after:,} rows")
    if account.earlier:
        console.print(f"  restored by the attempt that was cut short: {', '.join(account.earlier)}")
    if account.untouched:
        console.print(f"  not written by the batch, unchanged: {', '.join(account.untouched)}")
    if swept.files:
        console.print(f"  removed {swept.files} data file(s) no commit refers to")
    console.print(
        "  the rows it wrote stay readable with `query --as-of VERSION`; the batch id is not used "
        "again, and its files are read as new when a run is given them:"
    )
    for path in account.files:
        console.print(f"    {path}")
