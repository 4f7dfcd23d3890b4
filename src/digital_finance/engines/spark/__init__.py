"""The Spark engine's package: PySpark and delta-spark are imported only in here, and lazily.

The local session (Delta jars and a class archive from the project's own cache, the workers'
daemon), the pipeline definition run on Spark (`runner`, `staging`, `delta_writes`, `gold`),
and Structured Streaming through the same definition (`stream`, `folder_stream`).
"""
