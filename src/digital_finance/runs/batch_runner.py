"""The order of a batch, the same on every engine; engines fill in how each step is done.

1. stage every file and evaluate the contract and the expectations — nothing is committed,
   so a `fail` rule stops the run with every table untouched;
2. commit the batch plan (`_system/batches`) — from here on a crash is resumed exactly;
3. commit bronze, quarantine, silver (MERGE), gold, each carrying the batch id as a Delta app
   transaction, so a table that already has the batch is skipped on resume;
4. log the run (`_system/pipeline_runs`), which marks the batch done.
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import ClassVar, Generic, TypeVar

from digital_finance.definition.pipeline import Pipeline
from digital_finance.definition.steps import JoinGold, LandBronze, MergeSilver, WriteQuarantine
from digital_finance.runs.failpoints import crash_point
from digital_finance.runs.plan import Batch, PlannedFile, plan_run
from digital_finance.runs.report import (
    BatchReport,
    Progress,
    RuleFailedError,
    RuleFailures,
    RunReport,
    check_fail_rules,
)
from digital_finance.sources.discovery import InputFile

Staged = TypeVar("Staged")
TableStep = LandBronze | WriteQuarantine | MergeSilver


class BatchRunner(ABC, Generic[Staged]):
    """Runs a `Pipeline` batch by batch; a subclass is one engine."""

    engine: ClassVar[str]

    def __init__(self, pipeline: Pipeline, progress: Progress) -> None:
        self.pipeline = pipeline
        self.progress = progress

    # --- what an engine provides -------------------------------------------------------
    @abstractmethod
    def planned_files(self) -> tuple[list[tuple[int, PlannedFile]], set[int]]:
        """Files of the batches planned so far, and the batches that succeeded."""

    @abstractmethod
    def stage(
        self, batch: Batch, run_id: str, report: BatchReport
    ) -> AbstractContextManager[Staged]:
        """Parse and check the batch; fill `report.records` and `report.rules`; clean up on exit."""

    @abstractmethod
    def commit_plan(self, batch: Batch, run_id: str, now: datetime) -> None:
        """Write the batch's files to `_system/batches`."""

    @abstractmethod
    def write_table(
        self, staged: Staged, step: TableStep, batch_id: int, run_id: str, now: datetime
    ) -> int | None:
        """Commit one table of the batch; rows written, or None when it had the batch."""

    @abstractmethod
    def rebuild_gold(self, step: JoinGold, batch_id: int) -> tuple[int, int]:
        """Rebuild gold; (rows, or -1 when it had the batch; holdings without a stock)."""

    @abstractmethod
    def log_run(self, report: BatchReport, started: datetime, finished: datetime) -> None:
        """Append the batch's row to `_system/pipeline_runs`."""

    # --- the order, shared ----------------------------------------------------------------
    def run(self, inputs: dict[str, list[InputFile]]) -> RunReport:
        """Resume an interrupted batch if there is one, then ingest what is new."""
        started = time.perf_counter()
        planned, succeeded = self.planned_files()
        plan = plan_run(inputs, planned, succeeded)
        report = RunReport(skipped_files=plan.skipped_files)
        for batch in (plan.resume, plan.new):
            if batch is not None:
                report.batches.append(self._run_batch(batch))
        report.seconds = time.perf_counter() - started
        return report

    def _run_batch(self, batch: Batch) -> BatchReport:
        run_id = uuid.uuid4().hex
        started_at = datetime.now(UTC)
        clock = time.perf_counter()
        report = BatchReport(batch.batch_id, run_id, "failed", files=len(batch.files))
        report.resumed = batch.resumed
        try:
            with self.stage(batch, run_id, report) as staged:
                check_fail_rules(report)
                if not batch.resumed:
                    self.commit_plan(batch, run_id, started_at)
                    crash_point("after_plan")
                self._commit(staged, batch.batch_id, run_id, started_at, report)
        except Exception as exc:
            report.error = (
                str(exc) if isinstance(exc, RuleFailedError) else f"{type(exc).__name__}: {exc}"
            )
            report.seconds = time.perf_counter() - clock
            try:
                self.log_run(report, started_at, datetime.now(UTC))
            except Exception as log_error:  # the batch's own error is the one to raise
                exc.add_note(f"logging the failed run failed too: {log_error!r}")
            raise
        report.status = "succeeded"
        report.seconds = time.perf_counter() - clock
        self.log_run(report, started_at, datetime.now(UTC))
        return report

    def _commit(
        self, staged: Staged, batch_id: int, run_id: str, now: datetime, report: BatchReport
    ) -> None:
        for step in self._table_steps():
            self.progress.stage(f"writing {step.table}")
            crash_point(f"before_{step.step_id}")
            clock = time.perf_counter()
            rows = self.write_table(staged, step, batch_id, run_id, now)
            _record(report, step.table, rows)
            report.timings[step.step_id] = time.perf_counter() - clock
        for gold in self.pipeline.steps_of(JoinGold):
            self.progress.stage(f"rebuilding {gold.step_id}")
            crash_point(f"before_{gold.step_id}")
            clock = time.perf_counter()
            rows, orphans = self.rebuild_gold(gold, batch_id)
            _record(report, gold.table, None if rows < 0 else rows)
            report.integrity_warnings = orphans
            check = gold.integrity_check
            report.rules.append(
                RuleFailures(check.dataset, check.name, check.action.value, orphans)
            )
            report.timings[gold.step_id] = time.perf_counter() - clock
        crash_point("before_run_log")

    def _table_steps(self) -> Iterator[TableStep]:
        # One table at a time, in definition order: bronze, quarantine, silver per dataset.
        for step in self.pipeline.steps:
            if isinstance(step, LandBronze | WriteQuarantine | MergeSilver):
                yield step


def _record(report: BatchReport, table: str, rows: int | None) -> None:
    if rows is None:
        report.skipped_tables.append(table)
    else:
        report.written[table] = rows
