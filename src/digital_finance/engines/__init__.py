"""Engines execute the pipeline definition. Each lives in its own package and is imported lazily."""
