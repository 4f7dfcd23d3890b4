"""Named crash points for the crash-and-rerun tests.

`DIGITAL_FINANCE_CRASH_AT=<point>` makes the process die on the spot (no clean-up, no
`finally`), exactly like a kill -9, when it reaches that point. Unset, this is one dictionary
lookup per commit.
"""

from __future__ import annotations

import os

ENV = "DIGITAL_FINANCE_CRASH_AT"


def crash_point(name: str) -> None:
    """Die here if the environment asks for it."""
    if os.environ.get(ENV) == name:
        os._exit(137)
