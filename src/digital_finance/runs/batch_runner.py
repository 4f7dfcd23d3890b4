"""The order of a batch, the same on every engine; engines fill in how each step is done.

1. stage every file and evaluate the contract and the expectations — nothing is committed,
   so a `fail` rule stops the run with every table untouched; any number of writers stage
   at once;
2. take the lakehouse's commit lock (`lakehouse.commit_lock`), plan again from the tables as
   they are now, and claim the batch id by committing the batch plan (`_system/batches`) —
   from here on a crash is resumed exactly;
3. commit bronze, quarantine, silver (MERGE), gold, each carrying the batch id as a Delta app
   transaction, so a table that already has the batch is skipped on resume;
4. log the run (`_system/pipeline_runs`), which marks the batch done, and let go of the lock.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Generic, TypeVar

from digital_finance.definition.pipeline import Pipeline
from digital_finance.definition.steps import JoinGold, LandBronze, MergeSilver, WriteQuarantine
from digital_finance.engines.registry import implementation
from digital_finance.errors import TerminalError
from digital_finance.lakehouse import spool
from digital_finance.lakehouse.commit_lock import CommitLock, commit_lock
from digital_finance.lakehouse.storage import Location, location
from digital_finance.runs.failpoints import crash_point
from digital_finance.runs.intake import FileIntake, Intake
from digital_finance.runs.plan import Batch, History, Plan, UnfinishedBatchError
from digital_finance.runs.report import (
    BatchReport,
    Progress,
    RuleFailedError,
    RuleFailures,
    RunReport,
    check_fail_rules,
)
from digital_finance.sources.discovery import InputFile
from digital_finance.sources.input_store import InputStore
from digital_finance.sources.stream_records import StreamRecords

log = logging.getLogger(__name__)


class AbandonCutShortError(TerminalError):
    """An abandon began and did not finish: running it again finishes it."""


Staged = TypeVar("Staged")
TableStep = LandBronze | WriteQuarantine | MergeSilver


class BatchRunner(ABC, Generic[Staged]):
    """Runs a `Pipeline` batch by batch; a subclass is one engine."""

    engine: ClassVar[str]

    def __init__(self, pipeline: Pipeline, progress: Progress, root: str | Location) -> None:
        self.pipeline = pipeline
        self.progress = progress
        self.lock: CommitLock = commit_lock(root)
        # where the spool is (a stream batch's records until it is done): written by the
        # driver on every engine, so either engine finishes the other's batch
        self.where: Location = root if isinstance(root, Location) else location(root)
        # inputs behind URIs are reached with the lakehouse's storage options
        self.inputs = InputStore(root.options if isinstance(root, Location) else ())
        # the batch claimed and not yet logged done: what an interruption leaves unfinished
        self.claimed: int | None = None

    # --- what an engine provides -------------------------------------------------------
    @abstractmethod
    def history(self) -> History:
        """What the `_system` tables say of the batches so far."""

    @abstractmethod
    def stage(
        self, batch: Batch, run_id: str, report: BatchReport, started_at: datetime
    ) -> AbstractContextManager[Staged]:
        """Parse and check the batch; fill `report.records` and `report.rules`; clean up on exit.
        `started_at` is the batch's time in its rows (`_ingested_at`), as its commits get it."""

    def history_mark(self) -> object | None:
        """Where the `_system` tables stood when `history()` last read them; None when an
        engine cannot tell (then every plan is made again under the lock)."""
        return None

    def history_moved(self, mark: object) -> bool:
        """Whether any `_system` table moved past `mark` (a `history_mark`)."""
        return True

    @abstractmethod
    def untouched(self, staged: Staged, step: TableStep) -> bool:
        """Whether the batch has no part of the step's dataset and its table exists: then
        nothing is written to it, not even the batch's app transaction (a stream of one
        dataset paid a commit a trigger for each of the other's tables). The batch's own
        tables still name it: finishing it from bronze checks the datasets it has parts of,
        and a table without the batch would only be written again with nothing."""

    @abstractmethod
    def holds_batch(self, batch_id: int, datasets: tuple[str, ...]) -> bool:
        """Whether bronze and quarantine of these datasets hold the batch, so that it can be
        finished from bronze (`stage` then reads a `from_bronze` batch from there)."""

    def clean_up(self, crashed: bool, spooled: set[str]) -> list[str]:
        """Remove what dead writers left, keeping the spool files `spooled` (an unfinished
        batch's); notes for the summary. Called under the lock. An engine with more to
        sweep adds to these."""
        gone = spool.sweep(self.where, spooled)
        if not gone:
            return []
        return [f"removed {gone} spool file(s) of stream batches already done or never claimed"]

    def spooled(self, sha256: str) -> bool:
        """Whether the spool holds these records (of a stream batch to finish)."""
        return spool.exists(self.where, sha256)

    def keep_records(self, records: StreamRecords) -> None:
        """Write a stream batch's records to the spool, before the batch is claimed."""
        spool.write(self.where, *records.encoded())

    def drop_records(self, sha256: str) -> None:
        """Let go of a finished stream batch's spool file."""
        spool.remove(self.where, sha256)

    def stream_records(self, batch: Batch) -> StreamRecords | None:
        """A stream batch's records: in memory when new, from the spool when finished after
        an interruption (whichever engine claimed it); None for a batch of files."""
        streamed = [pf for pf in batch.files if not pf.is_file]
        if not streamed:
            return None
        if isinstance(batch.records, StreamRecords):
            return batch.records
        import pyarrow as pa

        names = sorted({pf.sha256 for pf in streamed if pf.sha256})
        table = pa.concat_tables([spool.read(self.where, n) for n in names])
        return StreamRecords(table, streamed[0].source)

    def begin_commit(self, staged: Staged, batch_id: int, now: datetime) -> None:
        """Called under the lock once the batch is staged and may be committed, before its
        claim: an engine may start work the table steps will use (the embedded engine
        writes silver's files beside the bronze and quarantine commits)."""

    @abstractmethod
    def commit_plan(self, batch: Batch, run_id: str, now: datetime) -> None:
        """Write the batch's files to `_system/batches`."""

    # The table steps (bronze, quarantine, silver, gold) are methods that the registry
    # (`engines.registry`) names per engine: `land_bronze`, `write_quarantine`,
    # `merge_silver` (staged, step, batch_id, run_id, now) -> rows or None when the table
    # had the batch; `rebuild_gold` (step, batch_id) -> (rows or -1, holdings without stock).

    @abstractmethod
    def log_run(self, report: BatchReport, started: datetime, finished: datetime) -> None:
        """Append the batch's row to `_system/pipeline_runs`."""

    # --- the order, shared ----------------------------------------------------------------
    def run(
        self, inputs: dict[str, list[InputFile]], intake: FileIntake | None = None
    ) -> RunReport:
        """Finish a batch that a crashed writer left, then ingest what is new in the files
        (through `intake` when the caller made it, for `FileIntake.hash_ahead`)."""
        return self.run_intake(intake or FileIntake(inputs, self.inputs))

    def run_intake(self, intake: Intake) -> RunReport:
        """Finish a batch that a crashed writer left, then ingest what `intake` brings.

        The new batch is staged before the commit lock is taken, because staging is the long
        part and needs no lock. Under the lock the run is planned again from the tables as
        they are now: the staged batch is committed only when it still holds exactly the
        same parts; when another writer ingested some of them meanwhile, what is left is
        staged again. The batch id is claimed under the lock, by the plan's own commit.
        """
        started = time.perf_counter()
        report = RunReport()
        with contextlib.ExitStack() as ahead:
            early = self._plan(intake)
            mark = self.history_mark()
            staged_early: tuple[Batch, Staged, _Attempt] | None = None
            if early.new is not None:
                attempt = _Attempt.begin(early.new)
                staged = self._enter_stage(ahead, early.new, attempt)
                staged_early = (early.new, staged, attempt)
            run_id = staged_early[2].report.run_id if staged_early else uuid.uuid4().hex
            with self.lock.hold(run_id, self.progress.stage):
                # no writer committed since the first plan: it stands (planning again reads
                # the whole history, which grows with every batch)
                unchanged = mark is not None and not self.history_moved(mark)
                plan = early if unchanged else self._plan(intake)
                report.skipped_files = plan.skipped_files
                report.notes = plan.notes
                needed = {pf.sha256 for pf in plan.resume.files} if plan.resume else set()
                report.notes += self.clean_up(
                    crashed=plan.resume is not None, spooled={n for n in needed if n}
                )
                report.taken_by_others = _taken_by_others(early.new, plan)
                if plan.resume is not None:
                    report.batches.append(self._run_batch(plan.resume))
                if plan.new is not None:
                    if staged_early is not None and staged_early[0].files == plan.new.files:
                        _, staged, attempt = staged_early
                        attempt.report.batch_id = plan.new.batch_id
                        report.batches.append(self._commit_staged(plan.new, staged, attempt))
                    else:
                        ahead.close()  # another writer took some of the parts: stage the rest
                        report.batches.append(self._run_batch(plan.new))
        report.seconds = time.perf_counter() - started
        return report

    def _plan(self, intake: Intake) -> Plan:
        """The plan; an interrupted batch whose files changed is finished from bronze when
        bronze holds it, and otherwise refused with what to do."""
        past = self.history()
        if past.abandoning:
            batch = max(past.abandoning)
            raise AbandonCutShortError(
                f"abandoning batch {batch} was cut short; finish it with "
                f"`digital-finance batch abandon {batch}` before the next run"
            )
        try:
            return intake.plan(past, None, self.spooled)
        except UnfinishedBatchError as exc:
            if not self.holds_batch(exc.batch_id, exc.datasets):
                raise
            plan = intake.plan(past, exc.batch_id, self.spooled)
            plan.notes.append(
                f"batch {exc.batch_id}: {exc.path} {exc.what}; the batch is finished from what "
                "bronze already holds of it"
            )
            return plan

    def _enter_stage(self, stack: contextlib.ExitStack, batch: Batch, attempt: _Attempt) -> Staged:
        try:
            report = attempt.report
            staged = stack.enter_context(
                self.stage(batch, report.run_id, report, attempt.started_at)
            )
        except Exception as exc:
            self._log_failure(attempt, exc)
            raise
        self._count_every_rule(attempt.report)
        crash_point("after_staging")
        return staged

    def _count_every_rule(self, report: BatchReport) -> None:
        """Give each rule of the batch's datasets a count, zero when no record broke it."""
        counted = {(r.dataset, r.rule) for r in report.rules}
        gold_checks = {g.integrity_check.name for g in self.pipeline.steps_of(JoinGold)}
        for e in self.pipeline.expectations:
            if e.name not in gold_checks and (e.dataset, e.name) not in counted:
                report.rules.append(RuleFailures(e.dataset, e.name, e.action.value, 0))

    def _run_batch(self, batch: Batch) -> BatchReport:
        attempt = _Attempt.begin(batch)
        with contextlib.ExitStack() as stack:
            staged = self._enter_stage(stack, batch, attempt)
            return self._commit_staged(batch, staged, attempt)

    def _commit_staged(self, batch: Batch, staged: Staged, attempt: _Attempt) -> BatchReport:
        report = attempt.report
        try:
            check_fail_rules(report)
            self.begin_commit(staged, batch.batch_id, attempt.started_at)
            context = {"run_id": report.run_id, "batch_id": batch.batch_id}
            if not batch.resumed:
                self.progress.stage(f"claiming batch {batch.batch_id}")
                if isinstance(batch.records, StreamRecords):
                    self.keep_records(batch.records)  # durable before the claim
                self.commit_plan(batch, report.run_id, attempt.started_at)
                self.claimed = batch.batch_id
                parts = len(batch.files)
                log.info("batch %d claimed: %d part(s)", batch.batch_id, parts, extra=context)
                crash_point("after_plan")
            else:
                self.claimed = batch.batch_id
                log.info("batch %d resumed after an interruption", batch.batch_id, extra=context)
            self._commit(staged, batch.batch_id, report.run_id, attempt.started_at, report)
        except Exception as exc:
            self._log_failure(attempt, exc)
            raise
        report.status = "succeeded"
        report.seconds = time.perf_counter() - attempt.clock
        self.log_run(report, attempt.started_at, datetime.now(UTC))
        self.claimed = None
        for sha in sorted({pf.sha256 for pf in batch.files if not pf.is_file and pf.sha256}):
            self.drop_records(sha)
        return report

    def _log_failure(self, attempt: _Attempt, exc: Exception) -> None:
        report = attempt.report
        report.error = (
            str(exc) if isinstance(exc, RuleFailedError) else f"{type(exc).__name__}: {exc}"
        )
        report.seconds = time.perf_counter() - attempt.clock
        try:
            self.log_run(report, attempt.started_at, datetime.now(UTC))
        except Exception as log_error:  # the batch's own error is the one to raise
            exc.add_note(f"logging the failed run failed too: {log_error!r}")

    def _commit(
        self, staged: Staged, batch_id: int, run_id: str, now: datetime, report: BatchReport
    ) -> None:
        for step in self._table_steps():
            self.progress.stage(f"writing {step.table}")
            crash_point(f"before_{step.step_id}")
            clock = time.perf_counter()
            if self.untouched(staged, step):
                rows: int | None = 0
            else:
                write = implementation(type(step), self.engine)
                rows = write(self, staged, step, batch_id, run_id, now)
            _record(report, step.table, rows)
            done = "had the batch" if rows is None else f"{rows} rows"
            context = {"run_id": run_id, "batch_id": batch_id, "table": step.table}
            log.debug("%s: %s", step.table, done, extra=context)
            report.timings[step.step_id] = time.perf_counter() - clock
        for gold in self.pipeline.steps_of(JoinGold):
            self.progress.stage(f"rebuilding {gold.step_id}")
            crash_point(f"before_{gold.step_id}")
            clock = time.perf_counter()
            rows, orphans = implementation(JoinGold, self.engine)(self, gold, batch_id)
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


@dataclass
class _Attempt:
    """One batch on its way from staging to its run-log row."""

    report: BatchReport
    started_at: datetime
    clock: float

    @classmethod
    def begin(cls, batch: Batch) -> _Attempt:
        report = BatchReport(batch.batch_id, uuid.uuid4().hex, "failed", files=len(batch.files))
        report.resumed = batch.resumed
        return cls(report, datetime.now(UTC), time.perf_counter())


def _taken_by_others(early: Batch | None, plan: Plan) -> int:
    """Files this run found new, which another writer ingested before it took the lock."""
    if early is None:
        return 0
    now_new = {pf.file for pf in plan.new.files} if plan.new is not None else set()
    return sum(1 for pf in early.files if pf.file not in now_new)


def _record(report: BatchReport, table: str, rows: int | None) -> None:
    if rows is None:
        report.skipped_tables.append(table)
    else:
        report.written[table] = rows
