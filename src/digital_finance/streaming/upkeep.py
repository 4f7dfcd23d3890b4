"""Table maintenance kept by a running stream, between its batches.

A stream commits a version to every table, and a file to most, once per trigger. Every
`every_seconds` of running it compacts, checkpoints and cleans its tables
(`Lakehouse.maintain`, under the commit lock like a batch), so that the hundredth thousand
batch costs what the first did. A run that is started and stopped often (`--once` from
cron) is maintained by `digital-finance maintain` on a schedule instead (docs/STREAMING.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digital_finance.api import Lakehouse
    from digital_finance.lakehouse.maintenance import MaintenanceReport

log = logging.getLogger(__name__)


class Upkeep:
    """Maintains a lakehouse between batches once `every_seconds` have passed (0: never)."""

    def __init__(
        self,
        lake: Lakehouse,
        every_seconds: float,
        on_done: Callable[[MaintenanceReport], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lake, self.every, self.on_done, self.clock = lake, every_seconds, on_done, clock
        self.due = clock() + every_seconds

    def between_batches(self) -> MaintenanceReport | None:
        """Maintain now if it is due; what was done, or None."""
        if self.every <= 0 or self.clock() < self.due:
            return None
        self.due = self.clock() + self.every
        try:
            report = self.lake.maintain()
        except Exception as exc:
            log.warning("table maintenance failed, tried again in %.0f s: %s", self.every, exc)
            return None
        self.due = self.clock() + self.every
        if self.on_done is not None:
            self.on_done(report)
        return report
