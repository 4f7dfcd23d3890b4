"""A stream maintains its tables once the interval has passed, not before, on its own thread."""

from __future__ import annotations

from typing import Any

from digital_finance.lakehouse.maintenance import MaintenanceReport
from digital_finance.streaming.upkeep import Upkeep


class _Lake:
    def __init__(self) -> None:
        self.calls = 0

    def maintain_beside_writers(self, stop: Any = None) -> MaintenanceReport:
        self.calls += 1
        return MaintenanceReport()


def test_maintenance_waits_for_its_interval_and_then_repeats() -> None:
    now = [100.0]
    lake, seen = _Lake(), []
    upkeep = Upkeep(lake, 300, seen.append, clock=lambda: now[0])  # type: ignore[arg-type]
    assert upkeep.between_batches() is None  # a fresh start is not due yet
    now[0] += 299
    assert upkeep.between_batches() is None and lake.calls == 0
    now[0] += 2
    assert upkeep.between_batches() is not None and lake.calls == 1 and len(seen) == 1
    now[0] += 10
    assert upkeep.between_batches() is None and lake.calls == 1
    now[0] += 300
    upkeep.between_batches()
    assert lake.calls == 2


def test_an_interval_of_zero_never_maintains() -> None:
    lake: Any = _Lake()
    upkeep = Upkeep(lake, 0, clock=lambda: 1e9)
    assert upkeep.between_batches() is None and lake.calls == 0


class _FailingLake:
    def __init__(self) -> None:
        self.calls = 0

    def maintain_beside_writers(self, stop: Any = None) -> MaintenanceReport:
        self.calls += 1
        raise OSError("the store went away")


def test_a_failed_maintenance_never_stops_the_stream_and_is_tried_again_later() -> None:
    now = [0.0]
    lake: Any = _FailingLake()
    upkeep = Upkeep(lake, 60, clock=lambda: now[0])
    now[0] = 61
    assert upkeep.between_batches() is None and lake.calls == 1
    now[0] = 62
    assert upkeep.between_batches() is None and lake.calls == 1  # not at every batch
    now[0] = 122
    upkeep.between_batches()
    assert lake.calls == 2
