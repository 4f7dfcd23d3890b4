"""Prometheus metrics of a stream, served on `--metrics-port` (prometheus-client).

Every series is prefixed `digital_finance_stream_`:
- `records_total{dataset}`: records committed (bronze rows);
- `quarantined_total{dataset, rule}`: records that broke each rule (contract or expectation);
- `batches_total{status}`: batches committed (`succeeded`) or failed;
- `batch_seconds`: a histogram of the time from a batch's hand-over to its commit;
- `event_to_silver_seconds`: a histogram, per batch, of the time from its first record's
  arrival at the consumer to the batch's commit (what a reader waits at worst);
- `lag{partition}`: Kafka's consumer lag per partition (high watermark minus the tables'
  position), read after each batch;
- `position{partition}`: where each partition stands in the tables;
- `dropped_total`: held records let go because a rebalance took their partition away.
"""

from __future__ import annotations

from typing import Any

from digital_finance.errors import TerminalError
from digital_finance.runs.report import RunReport

PREFIX = "digital_finance_stream_"


class StreamMetrics:
    """The stream's series, in a registry of their own."""

    def __init__(self) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise TerminalError(
                "--metrics-port needs prometheus-client: pip install 'digital-finance[kafka]'"
            ) from exc
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.records = prom.Counter(
            f"{PREFIX}records", "records committed", ["dataset"], registry=r
        )
        self.quarantined = prom.Counter(
            f"{PREFIX}quarantined", "records that broke a rule", ["dataset", "rule"], registry=r
        )
        self.batches = prom.Counter(f"{PREFIX}batches", "batches", ["status"], registry=r)
        buckets = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
        self.batch_seconds = prom.Histogram(
            f"{PREFIX}batch_seconds", "hand-over to commit", buckets=buckets, registry=r
        )
        self.latency = prom.Histogram(
            f"{PREFIX}event_to_silver_seconds", "first record's arrival to its batch's commit",
            buckets=buckets, registry=r,
        )  # fmt: skip
        self.lag = prom.Gauge(f"{PREFIX}lag", "consumer lag", ["partition"], registry=r)
        self.position = prom.Gauge(
            f"{PREFIX}position", "the tables' position", ["partition"], registry=r
        )
        self.dropped = prom.Counter(f"{PREFIX}dropped", "held records let go", registry=r)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve `/metrics` on a thread of its own."""
        self._prom.start_http_server(port, addr=host, registry=self.registry)

    def batch(self, report: RunReport, seconds: float, waited: float | None) -> None:
        """A hand-over committed: its batches, records, rule failures and times (`waited`:
        None where the first record's arrival is not known)."""
        for b in report.batches:
            self.batches.labels(b.status).inc()
            for dataset, n in b.records.items():
                self.records.labels(dataset).inc(n)
            for rule in b.rules:
                if rule.failures and rule.action != "warn":
                    self.quarantined.labels(rule.dataset, rule.rule).inc(rule.failures)
        self.batch_seconds.observe(seconds)
        if waited is not None:
            self.latency.observe(waited)

    def positions(self, at: dict[str, int], ends: dict[str, int] | None) -> None:
        """Where the partitions stand, and (Kafka) how far behind their ends."""
        for partition, position in at.items():
            self.position.labels(partition).set(position)
            if ends and partition in ends:
                self.lag.labels(partition).set(max(0, ends[partition] - position))

    def failed(self) -> None:
        """A batch failed (the stream stops with its error)."""
        self.batches.labels("failed").inc()


def text(metrics: Any) -> str:
    """The exposition text (for tests and `--once` runs)."""
    import prometheus_client as prom

    return prom.generate_latest(metrics.registry).decode()
