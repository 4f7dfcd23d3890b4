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

from typing import Any

from digital_finance.streaming.metrics import StreamMetrics

PREFIX = "digital_finance_api_"


class ServiceMetrics:
    """The service's series, in the stream metrics' registry (one `/metrics`)."""

    def __init__(self) -> None:
        import prometheus_client as prom

        self.stream = StreamMetrics()
        r = self.stream.registry
        self._prom = prom
        self._requests = prom.Counter(
            f"{PREFIX}requests", "requests answered", ["route", "status"], registry=r
        )
        self._seconds = prom.Histogram(
            f"{PREFIX}request_seconds", "time to answer", ["route"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )  # fmt: skip
        self._records = prom.Counter(
            f"{PREFIX}records", "records taken", ["dataset", "verdict"], registry=r
        )
        self.backlog = prom.Gauge(
            f"{PREFIX}log_backlog_records", "durable, not yet in the tables", ["dataset"],
            registry=r,
        )  # fmt: skip
        self.log_bytes = prom.Gauge(f"{PREFIX}log_bytes", "the log folder's size", registry=r)
        # children made once: `labels()` costs a lock and a dict lookup per call
        self._children: dict[tuple[str, int], tuple[object, object]] = {}
        self._record_children: dict[tuple[str, str], Any] = {}

    def request(self, route: str, status: int, seconds: float) -> None:
        """One request answered."""
        pair = self._children.get((route, status))
        if pair is None:
            pair = (
                self._requests.labels(route, str(status)),
                self._seconds.labels(route),
            )
            self._children[(route, status)] = pair
        pair[0].inc()  # type: ignore[attr-defined]
        pair[1].observe(seconds)  # type: ignore[attr-defined]

    def records(self, dataset: str, accepted: int, rejected: int) -> None:
        """Records of one accepted request."""
        self._counter(dataset, "accepted").inc(accepted)
        if rejected:
            self._counter(dataset, "rejected").inc(rejected)

    def _counter(self, dataset: str, verdict: str) -> Any:
        child = self._record_children.get((dataset, verdict))
        if child is None:
            child = self._records.labels(dataset, verdict)
            self._record_children[(dataset, verdict)] = child
        return child

    def exposition(self) -> bytes:
        """The text Prometheus scrapes."""
        data: bytes = self._prom.generate_latest(self.stream.registry)
        return data
