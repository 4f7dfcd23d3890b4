"""The service's request and record series, counted in plain numbers and exposed as
Prometheus counters and a histogram when scraped."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from digital_finance.service.metrics import ServiceMetrics


def _samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_requests_records_and_their_times_are_exposed_as_counted() -> None:
    metrics = ServiceMetrics()
    for seconds in (0.0005, 0.001, 0.003, 0.02, 7.0):
        metrics.request("events", 202, seconds)
    metrics.request("events", 400, 0.002)
    metrics.records("stocks", 3, 1)
    metrics.records("stocks", 2, 0)
    got = _samples(metrics)
    assert (
        got[("digital_finance_api_requests_total", (("route", "events"), ("status", "202")))] == 5
    )
    assert (
        got[("digital_finance_api_requests_total", (("route", "events"), ("status", "400")))] == 1
    )
    bucket = "digital_finance_api_request_seconds_bucket"
    le = {
        b: got[(bucket, (("le", b), ("route", "events")))]
        for b in ("0.001", "0.0025", "5.0", "+Inf")
    }
    assert le == {"0.001": 2, "0.0025": 3, "5.0": 5, "+Inf": 6}  # `le`: at most, cumulative
    assert got[("digital_finance_api_request_seconds_count", (("route", "events"),))] == 6
    total = got[("digital_finance_api_request_seconds_sum", (("route", "events"),))]
    assert abs(total - 7.0265) < 1e-9
    records = "digital_finance_api_records_total"
    assert got[(records, (("dataset", "stocks"), ("verdict", "accepted")))] == 5
    assert got[(records, (("dataset", "stocks"), ("verdict", "rejected")))] == 1
