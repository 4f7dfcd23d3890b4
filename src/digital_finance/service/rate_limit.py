"""Per-client rate limits: a token bucket per caller, refilled continuously.

A caller's bucket holds up to `burst` requests and refills at `rate` per second; a request
finding it empty is refused with 429 and the seconds until a token is back
(`Retry-After`), before its body is read. Buckets of callers idle long enough to be full
again are forgotten, so the table holds only the callers of the last moments.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimits:
    """Token buckets keyed by the caller's subject."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # subject -> (tokens, when)
        self._swept = clock()

    def take(self, subject: str) -> float:
        """0 when the request may go ahead; else the seconds to wait before retrying."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, when = self._buckets.get(subject, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        if tokens < 1.0:
            self._buckets[subject] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[subject] = (tokens - 1.0, now)
        if now - self._swept > self.burst / self.rate:
            self._sweep(now)
        return 0.0

    def _sweep(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {s: b for s, b in self._buckets.items() if now - b[1] < full_after}
        self._swept = now


def retry_after(seconds: float) -> str:
    """The `Retry-After` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
