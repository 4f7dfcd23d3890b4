"""Named points where tests make the process die or be interrupted.

`DIGITAL_FINANCE_CRASH_AT=<point>` makes the process die on the spot (no clean-up, no
`finally`), exactly like a kill -9, when it reaches that point.
`DIGITAL_FINANCE_SIGNAL_AT=<point>[:TERM]` sends the process SIGINT (or SIGTERM) there, so
the interrupted-run tests go through the very signal handling a Ctrl-C does. Unset, this is
two dictionary lookups per commit.
"""

from __future__ import annotations

import os
import signal
import time

ENV = "DIGITAL_FINANCE_CRASH_AT"
SIGNAL_ENV = "DIGITAL_FINANCE_SIGNAL_AT"


def crash_point(name: str) -> None:
    """Die, or be interrupted, here if the environment asks for it."""
    if os.environ.get(ENV) == name:
        os._exit(137)
    wanted = os.environ.get(SIGNAL_ENV)
    if wanted and wanted.split(":")[0] == name:
        number = signal.SIGTERM if wanted.endswith(":TERM") else signal.SIGINT
        os.kill(os.getpid(), number)
        time.sleep(5)  # the handler raises in this thread before the sleep ends
