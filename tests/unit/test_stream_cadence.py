"""When the stream loop closes its batches: on the trigger's cadence, as Spark's
processing-time trigger starts them, whatever the commits before took."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from digital_finance.sources.stream_records import records_table
from digital_finance.streaming.loop import StreamLoop, StreamOptions


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Arrivals:
    """A feed whose records arrive at set times; a poll waits on the clock."""

    def __init__(self, clock: Clock, times: list[float]) -> None:
        self.clock, self.times, self.taken = clock, times, 0

    def poll(self, timeout: float, limit: int) -> pa.Table:
        due = [t for t in self.times[self.taken :] if t <= self.clock.now]
        if not due:
            upcoming = [t for t in self.times[self.taken :] if t <= self.clock.now + timeout]
            self.clock.now = upcoming[0] if upcoming else self.clock.now + timeout
            due = upcoming[:1]
        due = due[:limit]
        first = self.taken
        self.taken += len(due)
        return records_table(("stocks", "t/0", first + i, b"{}") for i in range(len(due)))

    def revoked(self) -> set[str]:
        return set()

    def caught_up(self) -> bool:
        return self.taken == len(self.times)


def _loop(clock: Clock, feed: Arrivals, **options: Any) -> StreamLoop:
    loop = StreamLoop(
        lake=None,  # type: ignore[arg-type]  # _collect never reaches the lakehouse
        kind="kafka",
        open_feed=lambda lake: feed,  # type: ignore[arg-type,return-value]
        options=StreamOptions(maintain_every_seconds=0, **options),
        clock=clock,
    )
    loop.feed = feed  # type: ignore[assignment]
    return loop


def test_batches_close_on_the_beat_however_long_the_commit_before_took() -> None:
    clock = Clock()
    feed = Arrivals(clock, [round(0.05 + 0.1 * i, 2) for i in range(100)])
    loop = _loop(clock, feed, trigger_seconds=1.0)
    closed = []
    for commit_seconds in (0.4, 1.5, 0.2, 0.2):
        held = loop._collect(lambda: False)
        closed.append((round(clock.now, 2), len(held)))
        clock.now += commit_seconds  # the batch's commit
    # 1.0; 2.0, not 1.0 s after the 0.4 s commit; 3.5: the 1.5 s commit ran past the 3.0
    # beat, so the next batch closes as soon as it holds anything; then 4.0 again
    assert [at for at, _ in closed] == [1.0, 2.0, 3.5, 4.0]
    assert [n for _, n in closed] == [10, 10, 15, 5]


def test_an_idle_stream_waits_for_the_beat_after_its_first_record() -> None:
    clock = Clock()
    feed = Arrivals(clock, [2.55, 2.6])
    loop = _loop(clock, feed, trigger_seconds=1.0)
    held = loop._collect(lambda: False)
    assert (round(clock.now, 2), len(held)) == (3.0, 2)


def test_once_takes_the_backlog_without_a_beat() -> None:
    clock = Clock()
    feed = Arrivals(clock, [0.0] * 5)
    loop = _loop(clock, feed, trigger_seconds=0.01, once=True, max_batch_records=3)
    assert len(loop._collect(lambda: False)) == 3
    assert len(loop._collect(lambda: False)) == 2
    assert clock.now == 0.0
