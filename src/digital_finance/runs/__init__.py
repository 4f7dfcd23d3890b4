"""Batches and the run log: what was ingested when, and how each run went."""
