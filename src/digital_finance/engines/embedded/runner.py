"""Run the pipeline definition on the embedded engine (DuckDB + deltalake).

A batch is staged in one DuckDB connection that spills to `<output>/_staging/<run id>`; each
table is then written by DuckDB as Parquet and committed by deltalake (see `delta_io`). The
order of a batch is the shared one in `runs.batch_runner`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import duckdb

from digital_finance import native
from digital_finance.contract.native_check import KernelUnsupportedError, NativeContract
from digital_finance.contract.schemas import DatasetSpec
from digital_finance.definition.pipeline import Pipeline
from digital_finance.definition.steps import (
    ApplyContract,
    JoinGold,
    LandBronze,
    MergeSilver,
    WriteQuarantine,
)
from digital_finance.engines.embedded import (
    bronze_ahead,
    delta_io,
    gold,
    silver_merge,
    system_tables,
)
from digital_finance.engines.embedded.bronze_ahead import BronzeAhead
from digital_finance.engines.embedded.databases import Databases
from digital_finance.engines.embedded.silver_ahead import SilverAhead
from digital_finance.engines.embedded.staging import StagedDataset
from digital_finance.engines.embedded.system_history import SystemHistory
from digital_finance.errors import TerminalError
from digital_finance.lakehouse import orphans, scratch
from digital_finance.lakehouse.storage import Location
from digital_finance.runs.batch_runner import BatchRunner, TableStep
from digital_finance.runs.failpoints import crash_point
from digital_finance.runs.plan import Batch, History
from digital_finance.runs.report import BatchReport, Progress, RuleFailures
from digital_finance.sources.base import FileSource, Source
from digital_finance.sources.bronze_source import BronzeSource

Staged = dict[str, StagedDataset]


@dataclass(frozen=True)
class EmbeddedOptions:
    """Knobs of the embedded engine."""

    memory_limit: str = "1GB"
    threads: int | None = None
    silver_write: silver_merge.Strategy = "auto"
    gold_write: gold.Way = "auto"
    # who decides the contract: the native kernel where it is installed (auto), always the
    # kernel (native: a clear error without it), or the compiled DuckDB query (sql)
    contract: Literal["auto", "native", "sql"] = "auto"


class NativeKernelMissingError(TerminalError, RuntimeError):
    """`contract = "native"` was asked for, but the kernel is not installed."""


def _contract_label(uses_kernel: list[bool]) -> str:
    if uses_kernel and all(uses_kernel):
        return "the native kernel"
    if any(uses_kernel):
        return "the native kernel and DuckDB SQL (a dataset the kernel cannot express)"
    if native.kernel() is None and not native.switched_off():
        return f"DuckDB SQL ({native.INSTALL_HINT}; about 2.7 times faster)"
    return "DuckDB SQL"


def wholly_rejected_warnings(dataset: str, files: list[tuple[str, int]]) -> list[str]:
    """The summary's warning for each file none of whose records fit the dataset."""
    option = "--stocks" if dataset == "stocks" else "--funds"
    return [
        f"all {n:,} records of {path} broke the {dataset} contract: was it given to the wrong "
        f"option ({option})? To read it again as another dataset: `digital-finance forget "
        f"{path}`, then run with the right option"
        for path, n in files
    ]


class EmbeddedRunner(BatchRunner[Staged]):
    """Executes a `Pipeline` with DuckDB and deltalake."""

    engine = "embedded"

    def __init__(
        self, pipeline: Pipeline, output: Location, options: EmbeddedOptions, progress: Progress
    ) -> None:
        super().__init__(pipeline, progress, output)
        self.root = output
        self.options = options
        self._history = SystemHistory(output)  # read incrementally: planning stays cheap
        self.databases = Databases(options.memory_limit, options.threads)
        self.silver_ahead = SilverAhead(output)
        # the batch being committed, for gold's increment (`rebuild_gold`)
        self._committing: tuple[int, Staged] | None = None

    def history(self) -> History:
        if self.root.is_local:
            self.root.path.mkdir(parents=True, exist_ok=True)
        return self._history.read()

    def history_mark(self) -> object | None:
        return self._history.mark()

    def history_moved(self, mark: object) -> bool:
        return not isinstance(mark, tuple) or self._history.moved(mark)

    @contextlib.contextmanager
    def stage(
        self, batch: Batch, run_id: str, report: BatchReport, started_at: datetime
    ) -> Iterator[Staged]:
        # a database that failed mid-write (a cursor left busy) is closed, not kept
        with (
            scratch.scratch_folder(self.root, run_id) as temp,
            self.databases.lend(temp) as con,
        ):
            ahead = _Landing(temp, batch, run_id, started_at)
            staged = self._stage(con, batch, report, ahead)
            try:
                yield staged
            finally:  # before the database goes: the silver thread may still be reading it
                self._committing = None
                self.silver_ahead.discard(staged.values())
                _close_bronze(staged.values())

    def _native_contract(self, spec: DatasetSpec, source_tz: str) -> NativeContract | None:
        if self.options.contract == "sql":
            return None
        module = native.kernel()
        if module is None:
            if self.options.contract == "native":
                raise NativeKernelMissingError(native.INSTALL_HINT)
            return None
        try:
            return NativeContract(module, spec, source_tz, threads=self.options.threads or 2)
        except KernelUnsupportedError:
            if self.options.contract == "native":
                raise
            return None

    def _stage(
        self, con: duckdb.DuckDBPyConnection, batch: Batch, report: BatchReport, ahead: _Landing
    ) -> Staged:
        staged: Staged = {}
        try:
            return self._stage_datasets(con, batch, report, staged, ahead)
        except BaseException:
            _close_bronze(staged.values())
            raise
        finally:
            # the kernel's slice workers are done once a dataset is loaded, or the batch failed
            for dataset in staged.values():
                if dataset.native is not None:
                    dataset.native.close()

    def _stage_datasets(
        self,
        con: duckdb.DuckDBPyConnection,
        batch: Batch,
        report: BatchReport,
        staged: Staged,
        ahead: _Landing,
    ) -> Staged:
        for step in self.pipeline.steps_of(ApplyContract):
            name = step.spec.name
            native = self._native_contract(step.spec, step.source_tz)
            bronze = ahead.bronze(name) if native is not None and batch.files_of(name) else None
            try:
                staged[name] = StagedDataset(
                    con,
                    step.spec,
                    step.source_tz,
                    self.pipeline.expectations_for(name),
                    native,
                    self._source(batch, name),
                    bronze,
                )
            except BaseException:  # an unusable expectation: the writer stops with the batch
                if bronze is not None:
                    bronze.close()
                if native is not None:
                    native.close()
                raise
        report.contract = _contract_label([d.native is not None for d in staged.values()])
        total = sum(pf.file.size - pf.start for pf in batch.files)
        self.progress.stage(f"reading {len(batch.files)} file(s)")
        self.progress.start_bytes(total)
        for name, dataset in staged.items():
            clock = time.perf_counter()
            dataset.load_files(
                batch.files_of(name),
                lambda pf: self.progress.advance_bytes(pf.file.size - pf.start),
            )
            report.reference_rows += dataset.resolve_with_reference()
            report.records[name] = dataset.records()
            report.warnings += wholly_rejected_warnings(name, dataset.wholly_rejected())
            report.timings[f"contract_{name}"] = time.perf_counter() - clock
            clock = time.perf_counter()
            counts = dataset.rule_counts()
            report.timings[f"expectations_{name}"] = time.perf_counter() - clock
            report.rules += [RuleFailures(name, r, a.value, n) for r, a, n in counts]
        return staged

    def _source(self, batch: Batch, dataset: str) -> Source:
        limits = self.pipeline.input_limits(dataset)
        if batch.from_bronze:
            bronze, rejected = self._landing_tables(dataset)
            return BronzeSource(self.root, bronze, rejected, batch.batch_id)
        records = self.stream_records(batch)
        if records is None:
            return FileSource(limits=limits, store=self.inputs)
        return records.with_limits(limits)

    def _landing_tables(self, dataset: str) -> tuple[str, str]:
        """The bronze and quarantine tables of a dataset."""
        bronze = next(s.table for s in self.pipeline.steps_of(LandBronze) if s.dataset == dataset)
        rejected = next(
            s.table for s in self.pipeline.steps_of(WriteQuarantine) if s.dataset == dataset
        )
        return bronze, rejected

    def holds_batch(self, batch_id: int, datasets: tuple[str, ...]) -> bool:
        tables = [t for d in datasets for t in self._landing_tables(d)]
        return all(delta_io.committed_batch(self.root, t) >= batch_id for t in tables)

    def clean_up(self, crashed: bool, spooled: set[str]) -> list[str]:
        notes = super().clean_up(crashed, spooled)
        left = scratch.remove_leftovers(self.root)
        if left.folders:
            notes.append(
                f"removed {left.folders} scratch folder(s) of interrupted runs "
                f"({left.bytes / 2**20:,.1f} MiB)"
            )
        if crashed or left.folders:
            found = orphans.sweep(self.root)
            if found.files:
                notes.append(
                    f"removed {found.files} data file(s) no commit refers to, left by an "
                    f"interrupted write ({found.bytes / 2**20:,.1f} MiB)"
                )
        return notes

    def commit_plan(self, batch: Batch, run_id: str, now: datetime) -> None:
        system_tables.commit_plan(self.root, batch, run_id, now)

    def land_bronze(
        self, staged: Staged, step: LandBronze, batch_id: int, run_id: str, now: datetime
    ) -> int | None:
        """Append every staged record of the dataset to bronze: the files written while the
        batch was staged (`bronze_ahead`), or the staged records' text."""
        ds = staged[step.dataset]
        if ds.bronze_ahead is not None:
            written = ds.bronze_ahead.finish()
            return bronze_ahead.commit(self.root, step.table, written, batch_id, ds.cursor())
        sql = ds.bronze(batch_id, run_id, now.isoformat())
        return delta_io.append_query(self.root, step.table, ds.cursor(), sql, batch_id)

    def write_quarantine(
        self, staged: Staged, step: WriteQuarantine, batch_id: int, run_id: str, now: datetime
    ) -> int | None:
        """Append the dataset's rejected records to quarantine."""
        ds = staged[step.dataset]
        sql = ds.quarantine(
            batch_id,
            run_id,
            now.isoformat(),
            f"contract_{step.dataset}",
            f"expectations_{step.dataset}",
        )
        con = ds.cursor()
        if delta_io.open_table(self.root, step.table) is not None:
            (row,) = con.execute(f"SELECT count(*) FROM ({sql})").fetchall()
            if not row[0]:  # a clean batch: only the batch is recorded (no file to write)
                return delta_io.append_nothing(self.root, step.table, batch_id)
        return delta_io.append_query(self.root, step.table, con, sql, batch_id)

    def begin_commit(self, staged: Staged, batch_id: int, now: datetime) -> None:
        """Start each silver table's files on the silver thread (`silver_ahead`): a new
        table's, a rebuild's, a mark's, and a touched-files rewrite's that `auto` chose (a
        silver below `MARK_MIN_ROWS`; a rewrite of a larger one was slower beside bronze's
        write than after it). Every other way is left to silver's step, with the candidates
        made here."""
        self._committing = (batch_id, staged)
        if any(True for _ in self.pipeline.steps_of(JoinGold)):
            self.databases.warm()  # gold's, opened while the tables before it commit
        if not self.root.is_local:
            return
        for step in self.pipeline.steps_of(MergeSilver):
            ds = staged[step.dataset]
            if ds.parts == 0:
                continue
            rows = ds.valid_records()
            asked = self.options.silver_write
            way = silver_merge.resolved(self.root, step.table, batch_id, rows, asked)
            ahead = (
                way in ("rebuild", "mark")
                or (way == "rewrite" and asked == "auto")
                or delta_io.open_table(self.root, step.table) is None  # its first files
            )
            con = ds.cursor()  # the silver thread's own
            batch = self._candidates(con, ds, step, batch_id, now, rows, way)
            self.silver_ahead.start(ds, step.table, con, batch, write=ahead)

    def merge_silver(
        self, staged: Staged, step: MergeSilver, batch_id: int, run_id: str, now: datetime
    ) -> int | None:
        """Bring the batch's latest record per key into silver: commit the files written
        ahead, or write them now when there are none."""
        ds = staged[step.dataset]
        ahead = self.silver_ahead.take(ds)
        written = ahead.written() if ahead is not None else None
        if written is not None:
            crash_point(f"written_{step.step_id}")  # files made, no commit names them yet
            offered = silver_merge.commit_written(self.root, step.table, written, batch_id)
            if offered is not None:
                return offered
        if ahead is not None:
            con, batch = ahead.con, ahead.batch
        else:
            con = ds.cursor()
            rows, way = ds.valid_records(), self.options.silver_write
            batch = self._candidates(con, ds, step, batch_id, now, rows, way)
        return silver_merge.merge_latest(self.root, step.table, con, batch)

    def _candidates(
        self,
        con: duckdb.DuckDBPyConnection,
        ds: StagedDataset,
        step: MergeSilver,
        batch_id: int,
        now: datetime,
        rows: int,
        way: silver_merge.Strategy,
    ) -> silver_merge.Candidates:
        """The batch's silver candidates, enriched, for queries on `con`."""
        sql = ds.latest(batch_id, now.isoformat(), step.rule)
        enrichments = self.pipeline.enrichments_for(step.dataset)
        if enrichments:
            # imported here: the enrichment modules cost a tenth of a second to load
            from digital_finance.engines.embedded import enrich

            sql = enrich.enriched(con, sql, enrichments, step.dataset)
        return silver_merge.Candidates(sql, batch_id, step.rule, rows, way)

    def untouched(self, staged: Staged, step: TableStep) -> bool:
        # 60 ms a trigger for a stream of one dataset, before (three empty commits)
        exists = delta_io.open_table(self.root, step.table) is not None
        return staged[step.dataset].parts == 0 and exists

    def rebuild_gold(self, step: JoinGold, batch_id: int) -> tuple[int, int]:
        """Bring gold up to date with silver: for the companies the batch touched only,
        where that is exact (`gold.rebuild`)."""
        touched = None if self.options.gold_write == "whole" else self._touched(step, batch_id)
        return gold.rebuild(
            self.root,
            step,
            batch_id,
            self.databases,
            touched,
            self.options.gold_write == "increment",
        )

    def _touched(self, step: JoinGold, batch_id: int) -> gold.Touched | None:
        if self._committing is None or self._committing[0] != batch_id:
            return None
        if delta_io.open_table(self.root, step.table) is None:
            return None  # a first gold is the whole join: what the batch touched is moot
        staged = self._committing[1]
        merges = {m.table: m for m in self.pipeline.steps_of(MergeSilver)}
        stocks, holdings = merges.get(step.stocks), merges.get(step.holdings)
        if stocks is None or holdings is None:
            return None
        key = stocks.rule.key
        return gold.Touched(
            key,
            staged[stocks.dataset].passed_values([*key, step.on]),
            staged[holdings.dataset].passed_values([step.on]),
            holdings.rule.key,
        )

    def log_run(self, report: BatchReport, started: datetime, finished: datetime) -> None:
        system_tables.log_run(self.root, report, started, finished, self.pipeline.source_tz)


@dataclass(frozen=True)
class _Landing:
    """Where and as what a staged batch writes bronze's files ahead (`bronze_ahead`)."""

    folder: Path
    batch: Batch
    run_id: str
    started_at: datetime

    def bronze(self, dataset: str) -> BronzeAhead | None:
        if self.batch.from_bronze:  # bronze holds the batch already
            return None
        return BronzeAhead(
            self.folder / f"bronze-{dataset}", self.batch.batch_id, self.run_id, self.started_at
        )


def _close_bronze(datasets: Iterable[StagedDataset]) -> None:
    for dataset in datasets:
        if dataset.bronze_ahead is not None:
            dataset.bronze_ahead.close()
