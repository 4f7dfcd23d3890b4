"""The ingestion API: `digital-finance serve` (docs/API.md)."""
