"""The read-ahead keeps order, carries errors to the consumer, and stops with it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from digital_finance.sources.prefetch import prefetch


def test_items_arrive_in_order() -> None:
    assert list(prefetch(iter(range(1000)), depth=3)) == list(range(1000))
    assert list(prefetch(iter([]))) == []


def test_an_error_is_raised_where_it_happened() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetch(items()):
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_stops_stops_the_producer() -> None:
    produced = []

    def items() -> Iterator[int]:
        for i in range(10_000):
            produced.append(i)
            yield i

    stream = prefetch(items(), depth=2)
    assert next(stream) == 0
    stream.close()  # runs the generator's finally: stop, then join the producer
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count < 10
    assert not any(t.name == "prefetch" for t in threading.enumerate())
