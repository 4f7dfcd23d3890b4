"""The service's Prometheus series, beside the ingesting stream's (`streaming.metrics`).

Prefixed `digital_finance_api_`:
- `requests_total{route, status}` and `request_seconds{route}` (a histogram);
- `records_total{dataset, verdict}`: records taken, `accepted` (pass the contract) or
  `rejected` (quarantine will hold them);
- `log_backlog_records{dataset}`: records durable in the log and not yet in the tables;
- `log_bytes`: the log folder's size.
The stream that moves the log into the tables adds its `digital_finance_stream_` series.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from typing import Any

from digital_finance.streaming.metrics import StreamMetrics

PREFIX = "digital_finance_api_"


BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class ServiceMetrics:
    """The service's series, in the stream metrics' registry (one `/metrics`)."""

    def __init__(self) -> None:
        import prometheus_client as prom

        self.stream = StreamMetrics()
        r = self.stream.registry
        self._prom = prom
        self.answered = _Answered()
        r.register(self.answered)
        self.backlog = prom.Gauge(
            f"{PREFIX}log_backlog_records", "durable, not yet in the tables", ["dataset"],
            registry=r,
        )  # fmt: skip
        self.log_bytes = prom.Gauge(f"{PREFIX}log_bytes", "the log folder's size", registry=r)

    def request(self, route: str, status: int, seconds: float) -> None:
        """One request answered."""
        self.answered.request(route, status, seconds)

    def records(self, dataset: str, accepted: int, rejected: int) -> None:
        """Records of one accepted request."""
        self.answered.records(dataset, accepted, rejected)

    def exposition(self) -> bytes:
        """The text Prometheus scrapes."""
        data: bytes = self._prom.generate_latest(self.stream.registry)
        return data


class _Answered:
    """`requests_total`, `request_seconds` and `records_total`, counted in plain numbers
    and turned into series when scraped.

    They change on every request, on the event loop's thread: a prometheus_client child
    takes a lock and a few calls per change, a tenth of a one-record request's own work.
    """

    def __init__(self) -> None:
        self._requests: dict[tuple[str, int], int] = {}
        # per route: a count per bucket (the last one +Inf), then the sum of the seconds
        self._seconds: dict[str, list[float]] = {}
        self._records: dict[tuple[str, str], int] = {}

    def request(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        counts = self._seconds.get(route)
        if counts is None:
            counts = self._seconds[route] = [0.0] * (len(BUCKETS) + 2)
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        counts[-1] += seconds

    def records(self, dataset: str, accepted: int, rejected: int) -> None:
        for verdict, n in (("accepted", accepted), ("rejected", rejected)):
            if n or verdict == "accepted":
                key = (dataset, verdict)
                self._records[key] = self._records.get(key, 0) + n

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        requests = CounterMetricFamily(
            f"{PREFIX}requests", "requests answered", labels=["route", "status"]
        )
        for (route, status), n in sorted(self._requests.items()):
            requests.add_metric([route, str(status)], n)
        yield requests
        seconds = HistogramMetricFamily(
            f"{PREFIX}request_seconds", "time to answer", labels=["route"]
        )
        for route, counts in sorted(self._seconds.items()):
            cumulative = list(itertools.accumulate(counts[:-1]))
            bounds = [*(repr(float(b)) for b in BUCKETS), "+Inf"]
            seconds.add_metric([route], list(zip(bounds, cumulative, strict=True)), counts[-1])
        yield seconds
        records = CounterMetricFamily(
            f"{PREFIX}records", "records taken", labels=["dataset", "verdict"]
        )
        for (dataset, verdict), n in sorted(self._records.items()):
            records.add_metric([dataset, verdict], n)
        yield records
