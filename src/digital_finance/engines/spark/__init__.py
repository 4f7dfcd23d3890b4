"""The Spark engine's package: PySpark and delta-spark are imported only in here, and lazily.

So far it holds the local session factory (Delta jars from the project's own cache); the
engine that runs the pipeline definition on Spark comes with issue 3.
"""
