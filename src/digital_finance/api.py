"""The library API: open a lakehouse, ingest a batch, read a table.

What the CLI does, for a program that lives longer than one run (a stream, the HTTP
service, an Airflow task, a notebook)::

    from digital_finance import Lakehouse

    lake = Lakehouse("lakehouse")  # a folder, created on the first write
    report = lake.ingest_files(stocks=["landing/stocks/"], funds=["landing/funds/*.json.gz"])
    for batch in report.batches:
        print(batch.batch_id, batch.written)
    holdings = lake.read("gold.stock_fund_holdings", columns=["fund_id", "symbol", "price"])

Errors are `digital_finance.errors.TerminalError` (change something first) or
`TransientError` (try again); nothing here prints or exits the process. Progress and
decisions go to the `digital_finance` logger, which installs no handler of its own.
Any number of `Lakehouse` objects, in any number of processes, may write one lakehouse at
once (`lakehouse.commit_lock`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digital_finance.config import RunConfig, load_config
from digital_finance.definition.pipeline import Pipeline, build_pipeline
from digital_finance.definition.steps import ApplyContract
from digital_finance.errors import TerminalError, TransientError
from digital_finance.lakehouse.layout import TABLES
from digital_finance.lakehouse.storage import Location, location
from digital_finance.runs.report import RunReport
from digital_finance.sources import read_ahead
from digital_finance.sources.discovery import InputFile, resolve_inputs
from digital_finance.sources.input_limits import InputLimits
from digital_finance.sources.input_store import InputStore

if TYPE_CHECKING:
    import pyarrow as pa

    from digital_finance.lakehouse.catalog import TableInfo
    from digital_finance.lakehouse.maintenance import MaintenancePolicy, MaintenanceReport
    from digital_finance.runs.batch_runner import BatchRunner

log = logging.getLogger("digital_finance")


class LoggedProgress:
    """Progress as log records at DEBUG: what a library caller gets unless it asks for more."""

    def stage(self, message: str) -> None:
        """A new stage of work begins."""
        log.debug(message)

    def start_bytes(self, total: int) -> None:
        """Reading begins."""
        log.debug("reading %d bytes", total)

    def advance_bytes(self, done: int) -> None:
        """More bytes were read (not logged: too frequent)."""


class Lakehouse:
    """One lakehouse: its tables under `root`, and the pipeline that writes them."""

    def __init__(
        self,
        root: str | Path | Location,
        config: RunConfig | None = None,
        *,
        engine: str = "embedded",
        spark: Any = None,
        progress: Any = None,
        storage_options: Mapping[str, str] | None = None,
    ) -> None:
        """Open the lakehouse at `root`: a folder (created on the first write) or a URI.

        `root` may be `abfss://container@account.dfs.core.windows.net/path` or
        `az://container/path`, reached with `storage_options` (delta-rs's keys) or the
        standard `AZURE_STORAGE_*` environment variables (docs/STORAGE.md).

        `config` is a `RunConfig` (see `from_config_file`); `engine` is `embedded` or
        `spark`, the latter with a SparkSession as `spark`. `progress` receives the stages
        and bytes of a run (`runs.report.Progress`); by default they are logged at DEBUG.
        """
        self.config = config or RunConfig()
        options = storage_options or self.config.plain_storage_options() or None
        self.root: Location = location(root, options)
        self.engine = engine
        self._spark = spark
        self._progress = progress or LoggedProgress()
        self._pipeline = _pipeline(self.config, engine)
        self._runner: BatchRunner[Any] | None = None
        # set while a maintenance thread checkpoints the tables (`streaming.upkeep`): the
        # batches then commit without delta-rs's checkpoint of every hundredth version
        self.checkpoints_by_upkeep = False

    @classmethod
    def from_config_file(
        cls, root: str | Path, config_file: str | Path | None, source_tz: str | None = None
    ) -> Lakehouse:
        """Open the lakehouse with the settings of a `rules.toml` (see `config.py`)."""
        path = Path(config_file) if config_file is not None else None
        return cls(root, load_config(path, source_tz))

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline definition the lakehouse is written with."""
        return self._pipeline

    def ingest_files(self, stocks: Sequence[str] = (), funds: Sequence[str] = ()) -> RunReport:
        """Ingest what is new in these files, folders or globs; finish a crashed batch first.

        Returns the batches committed (none when nothing was new). Raises `InputError`
        when a pattern matches nothing, `RuleFailedError` when a `fail` rule fired (nothing
        was committed), `BatchClaimError` or `FileChangedError` when a retry may help.
        """
        store = InputStore(self.root.options)
        inputs = {
            "stocks": resolve_inputs(list(stocks), store) if stocks else [],
            "mutual_funds": resolve_inputs(list(funds), store) if funds else [],
        }
        return self.ingest(inputs)

    def ingest(self, inputs: dict[str, list[InputFile]]) -> RunReport:
        """Ingest listed files per dataset (`stocks`, `mutual_funds`); see `ingest_files`."""
        from digital_finance.runs.intake import FileIntake

        intake = FileIntake(inputs, InputStore(self.root.options))
        if self._runner is None and self._never_planned():
            intake.hash_ahead()  # while the engine's libraries load, below
            if self.engine == "embedded":
                intake.read_ahead(self._first_read())
        try:
            with self._commits():
                return self._logged(self._batch_runner().run(inputs, intake))
        finally:
            read_ahead.discard()

    def _first_read(self) -> list[tuple[str, InputLimits]]:
        """The datasets in the order a batch stages them, with their reader's limits."""
        return [
            (step.spec.name, self._pipeline.input_limits(step.spec.name))
            for step in self._pipeline.steps_of(ApplyContract)
        ]

    def _never_planned(self) -> bool:
        """Whether no batch was ever planned here (a local lakehouse without its batch
        table): then the plan hashes every listed file."""
        return self.root.is_local and not (self.root.path / TABLES.batches / "_delta_log").is_dir()

    def _commits(self) -> contextlib.AbstractContextManager[None]:
        if not self.checkpoints_by_upkeep or self.engine != "embedded":
            return contextlib.nullcontext()
        from digital_finance.engines.embedded import delta_io

        return delta_io.checkpoints_kept_apart()

    def _logged(self, report: RunReport) -> RunReport:
        for batch in report.batches:
            log.info(
                "batch %d %s: %s",
                batch.batch_id,
                batch.status,
                ", ".join(f"{t} {n}" for t, n in batch.written.items()) or "no table changed",
                extra={"run_id": batch.run_id, "batch_id": batch.batch_id},
            )
        return report

    def ingest_stream(self, source: str, records: pa.Table) -> RunReport:
        """Ingest a stream's records (`sources.stream_records.schema()`) as one batch.

        `source` is the kind of stream (`kafka`, `mqtt`); records at positions some batch
        already holds are dropped, so handing the same records over twice (a retry, two
        consumers after a rebalance) never doubles a row. An unfinished batch of any source
        is finished first; an empty table only does that.
        """
        from digital_finance.runs.intake import StreamIntake

        runner = self._batch_runner()
        with self._commits():
            return self._logged(runner.run_intake(StreamIntake(source, records, runner.inputs)))

    def stream_positions(self, source: str) -> dict[str, int]:
        """Where each partition of a stream stands in the tables: partition -> the position
        of the next record to read (the end of its last batch's part)."""
        from digital_finance.runs.plan import reached_positions

        past = self._batch_runner().history()
        reached = reached_positions(past.planned, past.abandoned)
        return {partition: end for (kind, partition), end in reached.items() if kind == source}

    def recent_stream_records(
        self, source: str, prefix: str, records: int
    ) -> list[tuple[str, str]]:
        """(partition, record text) of what bronze holds of the last batches, at least
        `records` records, with parts of `source` partitions starting with `prefix`: what a
        broker that does not replay may deliver again after a crash (`streaming.mqtt_feed`)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        from digital_finance.engines.embedded import system_tables

        # read whole: a runner's history keeps one part per partition of the batches done
        past = system_tables.history(self.root)
        sizes: dict[int, int] = {}
        for b, pf in past.planned:
            if pf.source == source and pf.partition.startswith(prefix) and b not in past.abandoned:
                sizes[b] = sizes.get(b, 0) + pf.end - pf.start
        ids: list[int] = []
        covered = 0
        for b in sorted(sizes, reverse=True):
            if covered >= records:
                break
            ids.append(b)
            covered += sizes[b]
        if not ids:
            return []
        found: list[tuple[int, int, str, str]] = []
        for dataset in ("stocks", "mutual_funds"):
            where = self.root.child(TABLES.bronze(dataset))
            try:
                dt = DeltaTable(where.uri, storage_options=where.storage_options)
            except TableNotFoundError:
                continue
            t = dt.to_pyarrow_table(
                columns=["_batch_id", "line_number", "source_file", "record"],
                filters=[("_batch_id", "in", ids)],
            )
            for b, line, p, r in zip(
                t["_batch_id"].to_pylist(), t["line_number"].to_pylist(),
                t["source_file"].to_pylist(), t["record"].to_pylist(), strict=True,
            ):  # fmt: skip
                if p is not None and p.startswith(prefix):
                    found.append((b, line, p, r))
        found.sort(key=lambda row: (row[0], row[1]))  # oldest first: a window drops those
        return [(p, r) for _, _, p, r in found]

    def tables(self) -> dict[str, TableInfo]:
        """Every existing table with its Delta version, row count and last commit time."""
        from digital_finance.lakehouse.catalog import existing_tables

        return {name.replace("/", "."): info for name, info in existing_tables(self.root).items()}

    def read(
        self, name: str, *, version: int | None = None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """A table (`silver.stocks`, `gold.stock_fund_holdings`, …) as Arrow, at `version`."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        from digital_finance.engines.embedded.delta_reads import arrow_rows

        table = name.replace(".", "/", 1)
        if table not in TABLES.every():
            known = ", ".join(t.replace("/", ".") for t in TABLES.every())
            raise TerminalError(f"no table named {name!r}; the tables are {known}")
        where = self.root.child(table)
        try:
            dt = DeltaTable(where.uri, version=version, storage_options=where.storage_options)
        except TableNotFoundError as exc:
            raise TerminalError(f"{name} does not exist yet: no batch has written it") from exc
        return arrow_rows(dt, list(columns) if columns is not None else None)

    def maintain(self, policy: MaintenancePolicy | None = None) -> MaintenanceReport:
        """Compact small files, checkpoint and clean the log of every table (and vacuum when
        the policy says so), under the commit lock: see `lakehouse.maintenance`.

        `policy` defaults to the config's `[maintenance]`. Safe beside any number of writers,
        which wait for it as for another batch (and it for them). Refused while a batch is
        unfinished, whose finishing or abandon needs the tables as the batch left them.
        """
        import uuid

        from digital_finance.lakehouse.commit_lock import commit_lock
        from digital_finance.lakehouse.maintenance import maintain
        from digital_finance.runs.abandon import unfinished_batch

        with commit_lock(self.root).hold(uuid.uuid4().hex, lambda m: log.info("%s", m)):
            unfinished = unfinished_batch(self.root)
            if unfinished is not None:
                # its restore or abandon needs the files and commits as the batch left them
                raise TerminalError(
                    f"batch {unfinished} is unfinished: finish it (run the same command "
                    f"again) or `digital-finance batch abandon {unfinished}` before maintaining"
                )
            report = maintain(self.root, policy or self.config.maintenance)
        for t in report.changed:
            log.info(
                "maintained %s: %d files -> %d%s",
                t.table,
                t.files_before,
                t.files_after,
                ", checkpoint" if t.checkpointed else "",
            )
        return report

    def maintain_beside_writers(
        self, policy: MaintenancePolicy | None = None, stop: Callable[[], bool] = lambda: False
    ) -> MaintenanceReport:
        """`maintain`, taking the commit lock for each change only: what a running stream
        does on its own thread, so that its batches (and other writers') wait for a commit
        and never for a rewrite.

        A pass is not begun while a batch is unfinished (checked under the lock, where a
        batch under way has finished). One a writer leaves unfinished during the pass does
        not need the pass to stop: finishing it reads its rows by batch
        id, which compaction keeps, and an abandon restores each table to a version whose
        files compaction leaves in place; only a vacuum would delete them, and a vacuum
        checks again under the lock.
        """
        import uuid

        from digital_finance.lakehouse.commit_lock import commit_lock
        from digital_finance.lakehouse.maintenance import maintain

        def refuse_unfinished() -> None:
            # the runner's history reads only what was appended since its last read
            past = self._batch_runner().history()
            unfinished = {b for b, _ in past.planned} - past.succeeded - past.abandoned
            if unfinished:
                raise TransientError(
                    f"batch {max(unfinished)} is unfinished: maintenance waits for it"
                )

        @contextlib.contextmanager
        def locked() -> Iterator[None]:
            with commit_lock(self.root).hold(uuid.uuid4().hex, lambda m: log.info("%s", m)):
                yield

        self._batch_runner().history()  # read whole (if it must be) before the lock
        with locked():  # a batch under way holds the lock: it is not unfinished
            refuse_unfinished()
        return maintain(
            self.root, policy or self.config.maintenance, locked, stop, refuse_unfinished
        )

    @property
    def claimed_batch(self) -> int | None:
        """The batch this lakehouse object claimed and has not finished (after an interrupt)."""
        return self._runner.claimed if self._runner is not None else None

    def query(
        self,
        sql: str,
        *,
        version: int | None = None,
        limit: int | None = None,
        timeout_seconds: float | None = None,
    ) -> pa.Table:
        """One read-only SELECT over every table (as `silver.stocks`, …), at most `limit` rows.

        Raises `QueryRefusedError` for anything but one SELECT over the tables, for SQL
        that fails, and for a statement that runs longer than `timeout_seconds`.
        """
        from digital_finance.lakehouse.read_only import read_only_connection, run_select

        with read_only_connection(
            self.root,
            version,
            memory_limit=self.config.memory_limit,
            threads=self.config.threads,
        ) as (con, names):
            return run_select(con, sql, names, limit=limit, timeout_seconds=timeout_seconds)

    def _batch_runner(self) -> BatchRunner[Any]:
        # one runner for the lakehouse's life: a long-lived caller pays its set-up once
        if self._runner is None:
            self._runner = _runner(self)
        return self._runner


def _pipeline(config: RunConfig, engine: str) -> Pipeline:
    from digital_finance.engines.registry import check_supported

    pipeline = build_pipeline(
        config.source_tz,
        config.expectations,
        config.rule_actions,
        config.enrichments,
        config.input_limits,
    )
    check_supported(pipeline, engine)
    return pipeline


def _runner(lake: Lakehouse) -> BatchRunner[Any]:
    if lake.engine == "spark":
        if lake._spark is None:
            raise TerminalError(
                "engine 'spark' needs a SparkSession: Lakehouse(..., spark=session)"
            )
        from digital_finance.engines.spark.runner import SparkRunner

        return SparkRunner(lake.pipeline, lake.root, lake._spark, lake._progress)
    from digital_finance import native
    from digital_finance.engines.embedded.runner import EmbeddedOptions, EmbeddedRunner

    config = lake.config
    if config.contract == "native" and native.kernel() is None:
        raise TerminalError(f'[engine] contract = "native", but {native.INSTALL_HINT}')
    options = EmbeddedOptions(
        memory_limit=config.memory_limit,
        threads=config.threads,
        silver_write=config.silver_write,  # type: ignore[arg-type]  # checked by load_config
        gold_write=config.gold_write,  # type: ignore[arg-type]  # checked by load_config
        contract=config.contract,  # type: ignore[arg-type]  # checked by load_config
    )
    return EmbeddedRunner(lake.pipeline, lake.root, options, lake._progress)
