"""Run the pipeline definition on Apache Spark with Delta Lake (delta-spark).

The same definition, contract and order of a batch as the embedded engine
(`runs.batch_runner`); the tables have the same paths, columns and types and carry the same
Delta app transactions, so either engine continues the other's lakehouse. The output root
may be a folder or a URI that Spark can write (`abfss://...` on Databricks).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime

from pyspark.sql import SparkSession

from digital_finance.definition.pipeline import Pipeline
from digital_finance.definition.steps import (
    ApplyContract,
    JoinGold,
    LandBronze,
    MergeSilver,
    WriteQuarantine,
)
from digital_finance.engines.spark import delta_writes, enrich, gold, system_tables
from digital_finance.engines.spark.progress import SparkTasks
from digital_finance.engines.spark.staging import SparkStagedDataset, parse_files, parse_messages
from digital_finance.errors import TerminalError
from digital_finance.lakehouse.layout import BRONZE_UNINDEXED, table_uri
from digital_finance.lakehouse.storage import Location
from digital_finance.runs.batch_runner import BatchRunner, TableStep
from digital_finance.runs.intake import FileIntake
from digital_finance.runs.plan import Batch, History
from digital_finance.runs.report import BatchReport, Progress, RunReport
from digital_finance.sources.discovery import InputFile
from digital_finance.sources.input_store import is_uri

Staged = dict[str, SparkStagedDataset]


class SparkRunner(BatchRunner[Staged]):
    """Executes a `Pipeline` with PySpark DataFrames and Delta Spark."""

    engine = "spark"

    def __init__(
        self, pipeline: Pipeline, output: str | Location, spark: SparkSession, progress: Progress
    ) -> None:
        # the same commit lock as the embedded engine: an flock on a folder, the lease on a
        # store (written with the lakehouse's storage options, beside Spark's own credentials)
        super().__init__(pipeline, progress, output)
        self.root = output.uri if isinstance(output, Location) else output
        self.spark = spark

    def history(self) -> History:
        return system_tables.history(self.spark, self.root)

    def run(
        self, inputs: dict[str, list[InputFile]], intake: FileIntake | None = None
    ) -> RunReport:
        """As every engine runs; Spark's task counts go to the progress meanwhile."""
        with SparkTasks(self.spark, self.progress):
            return super().run(inputs, intake)

    def holds_batch(self, batch_id: int, datasets: tuple[str, ...]) -> bool:
        # Finishing from bronze is the embedded engine's (docs/DECISIONS.md); on Spark an
        # interrupted batch whose files changed is restored or abandoned.
        return False

    @contextlib.contextmanager
    def stage(
        self, batch: Batch, run_id: str, report: BatchReport, started_at: datetime
    ) -> Iterator[Staged]:
        remote = next(
            (pf.partition for pf in batch.files if pf.is_file and is_uri(pf.partition)), None
        )
        if remote is not None:
            raise TerminalError(
                f"{remote}: the Spark engine reads inputs from paths its workers can open (a "
                "local or mounted folder; on Databricks a Unity Catalog volume), not from "
                "object-store URIs yet; mount the container, or ingest with the embedded engine"
            )
        records = self.stream_records(batch)
        staged: Staged = {}
        try:
            what = "file(s)" if records is None else "stream part(s)"
            self.progress.stage(f"reading {len(batch.files)} {what}")
            for step in self.pipeline.steps_of(ApplyContract):
                name = step.spec.name
                clock = time.perf_counter()
                parts = batch.files_of(name)
                limits = self.pipeline.input_limits(name)
                if records is None:
                    parsed = parse_files(self.spark, step.spec, step.source_tz, parts, limits)
                    source = "file"
                else:
                    parsed = parse_messages(
                        self.spark, step.spec, step.source_tz, parts, records.table, limits
                    )
                    source = records.kind
                dataset = SparkStagedDataset(
                    self.spark, step.spec, parsed, parts,
                    self.pipeline.expectations_for(name), source,
                )  # fmt: skip
                staged[name] = dataset
                counted, by_reference, rules = dataset.rule_counts()
                report.records[name] = counted
                report.reference_rows += by_reference
                report.rules += rules
                report.timings[f"contract_{name}"] = time.perf_counter() - clock
            yield staged
        finally:
            for dataset in staged.values():
                dataset.release()

    def commit_plan(self, batch: Batch, run_id: str, now: datetime) -> None:
        system_tables.commit_plan(self.spark, self.root, batch, run_id, now)

    def land_bronze(
        self, staged: Staged, step: LandBronze, batch_id: int, run_id: str, now: datetime
    ) -> int | None:
        """Append every staged record of the dataset to bronze."""
        df = staged[step.dataset].bronze(batch_id, run_id, now)
        path = table_uri(self.root, step.table)
        return delta_writes.write(df, path, batch_id, "append", unindexed=BRONZE_UNINDEXED)

    def write_quarantine(
        self, staged: Staged, step: WriteQuarantine, batch_id: int, run_id: str, now: datetime
    ) -> int | None:
        """Append the dataset's rejected records to quarantine."""
        df = staged[step.dataset].quarantine(
            batch_id, run_id, now, f"contract_{step.dataset}", f"expectations_{step.dataset}"
        )
        return delta_writes.write(df, table_uri(self.root, step.table), batch_id, "append")

    def merge_silver(
        self, staged: Staged, step: MergeSilver, batch_id: int, run_id: str, now: datetime
    ) -> int | None:
        """Bring the batch's latest record per key into silver."""
        candidates = staged[step.dataset].latest(batch_id, now, step.rule)
        enrichments = self.pipeline.enrichments_for(step.dataset)
        if enrichments:
            candidates = enrich.enriched(candidates, enrichments)
        path = table_uri(self.root, step.table)
        return delta_writes.merge_latest(candidates, path, batch_id, step.rule)

    def untouched(self, staged: Staged, step: TableStep) -> bool:
        # a Delta transaction each (about a second on `local[2]`), and a MERGE's Spark job
        exists = delta_writes.exists(self.spark, table_uri(self.root, step.table))
        return staged[step.dataset].untouched and exists

    def rebuild_gold(self, step: JoinGold, batch_id: int) -> tuple[int, int]:
        """Rebuild gold from silver."""
        return gold.rebuild(self.spark, self.root, step, batch_id)

    def log_run(self, report: BatchReport, started: datetime, finished: datetime) -> None:
        system_tables.log_run(
            self.spark, self.root, report, started, finished, self.pipeline.source_tz
        )
