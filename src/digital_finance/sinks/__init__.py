"""Where tables go besides Delta: plain Parquet and CSV exports."""
