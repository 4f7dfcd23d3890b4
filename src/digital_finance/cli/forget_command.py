"""`digital-finance forget FILE...`: the next run reads these files again, as new."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from digital_finance.cli.console import console, err_console, existing_lakehouse, fail

EXPLAINED = (
    "The next run given them reads them again, whole, as new records. What they already put "
    "in the tables stays: bronze and quarantine keep the rows of the earlier read (they "
    "record what was received), and silver keeps what won then. Read again, each record "
    "competes again in silver by event time, and on equal times the new read wins (it is "
    "received later), so silver ends as if the file had only been given now."
)


def forget(root: str, files: list[str]) -> None:
    """Mark the files as never read, under the commit lock, and say what that means."""
    from digital_finance.engines.embedded import system_tables
    from digital_finance.lakehouse.commit_lock import commit_lock

    where = existing_lakehouse(root)
    from digital_finance.sources.input_store import is_uri

    # an object is known by its URI as given; a file by its resolved path, as runs list it
    paths = [f if is_uri(f) else str(Path(f).expanduser().absolute().resolve()) for f in files]
    with commit_lock(where).hold(uuid.uuid4().hex, lambda m: err_console.print(m)):
        past = system_tables.history(where)
        open_ = {b for b, _ in past.planned} - past.succeeded - past.abandoned
        if open_:
            batch = max(open_)
            fail(
                f"batch {batch} is unfinished: finish it (run the same command again) or "
                f"`digital-finance batch abandon {batch}` before forgetting files"
            )
        read = {
            pf.file.path
            for b, pf in past.planned
            if b not in past.abandoned and b > past.forgotten.get(pf.file.path, 0)
        }
        unknown = [p for p in paths if p not in read]
        if unknown:
            fail(
                "never ingested (or forgotten already), so nothing to forget: " + ", ".join(unknown)
            )
        highest = max((b for b, _ in past.planned), default=0)
        system_tables.forget(where, paths, highest, datetime.now(UTC))
    console.print(f"forgot {len(paths)} file(s):", markup=False)
    for path in paths:
        console.print(f"  {path}", markup=False)
    console.print(EXPLAINED, markup=False)
