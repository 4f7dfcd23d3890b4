"""The embedded engine: DuckDB for compute, `deltalake` for the tables, all in one process."""
