"""Request deadlines kept by a sweep: a due request times out, one that left in time does
not, a cancellation from elsewhere stays a cancellation, and the sweep stops when idle."""

from __future__ import annotations

import asyncio
import time

import pytest

from digital_finance.service.deadlines import Deadlines


async def _limited(deadlines: Deadlines, seconds: float, work: float) -> str:
    deadline = deadlines.enter(seconds)
    try:
        await asyncio.sleep(work)
        return "finished"
    except asyncio.CancelledError:
        deadline.raise_if_expired()
        raise
    finally:
        deadline.leave()


def test_a_request_past_its_deadline_times_out_within_the_resolution() -> None:
    deadlines = Deadlines(resolution=0.05)

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await _limited(deadlines, 0.2, 5.0)
        return time.monotonic() - started

    took = asyncio.run(main())
    assert 0.2 <= took < 0.2 + 0.05 + 0.2  # due time, one sweep late at most, and slack
    assert len(deadlines) == 0


def test_requests_that_finish_in_time_are_untouched_and_the_sweep_stops() -> None:
    deadlines = Deadlines(resolution=0.02)

    async def main() -> list[str]:
        done = await asyncio.gather(*(_limited(deadlines, 1.0, 0.01 * i) for i in range(20)))
        await asyncio.sleep(0.1)  # a sweep with nothing registered does not reschedule
        assert deadlines._sweeping is None
        return done

    assert asyncio.run(main()) == ["finished"] * 20
    assert len(deadlines) == 0


def test_a_short_deadline_after_long_ones_still_fires() -> None:
    deadlines = Deadlines(resolution=0.02)

    async def main() -> list[object]:
        long = [asyncio.create_task(_limited(deadlines, 10.0, 0.5)) for _ in range(3)]
        await asyncio.sleep(0)
        short = asyncio.create_task(_limited(deadlines, 0.05, 5.0))
        return await asyncio.gather(*long, short, return_exceptions=True)

    *long, short = asyncio.run(main())
    assert long == ["finished"] * 3
    assert isinstance(short, TimeoutError)


def test_a_cancellation_from_elsewhere_is_not_taken_for_a_timeout() -> None:
    deadlines = Deadlines(resolution=0.02)

    async def main() -> None:
        task = asyncio.create_task(_limited(deadlines, 10.0, 5.0))
        await asyncio.sleep(0.05)
        task.cancel()  # the server shutting down, the client gone
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert len(deadlines) == 0
