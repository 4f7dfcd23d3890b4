"""`digital-finance run`: plan, run, export, and print a summary the user can act on."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from digital_finance.api import Lakehouse
from digital_finance.cli.console import console, err_console, fail
from digital_finance.cli.interrupts import (
    Interrupted,
    interrupted_message,
    received,
    signals_raise,
)
from digital_finance.config import ConfigError, RunConfig, load_config
from digital_finance.definition.pipeline import REFERENTIAL_INTEGRITY, build_pipeline
from digital_finance.errors import TerminalError, TransientError
from digital_finance.lakehouse.storage import Location, StorageError, location
from digital_finance.runs.report import BatchReport, RuleFailedError, RunReport
from digital_finance.sources.discovery import InputError, InputFile, resolve_inputs
from digital_finance.sources.input_store import InputStore

EXIT_TRY_AGAIN = 75  # EX_TEMPFAIL: a scheduler may simply run the command again


class RichProgress:
    """Progress on stderr: a byte bar on a terminal; plain, timed lines in a log file.

    A run whose stderr goes to a file (cron, CI, Airflow) gets a line per stage and, while
    reading, one every `LOG_EVERY` seconds with how far it is, instead of a bar nobody sees.
    """

    LOG_EVERY = 10.0

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=None)
        self.last = "starting"
        self.plain = not err_console.is_terminal
        self.started = self.logged = time.monotonic()
        self.total = self.done = 0

    def stage(self, message: str) -> None:
        """Show the stage."""
        self.last = message
        self.progress.update(self.task, description=message)
        if self.plain:
            self._line(message)

    def detail(self, text: str) -> None:
        """What the current stage is doing now (the Spark engine's task counts)."""
        self.progress.update(self.task, description=f"{self.last} ({text})")
        if self.plain and time.monotonic() - self.logged >= self.LOG_EVERY:
            self._line(f"{self.last}: {text}")

    def start_bytes(self, total: int) -> None:
        """Reset the bar to a new total."""
        self.total, self.done = total, 0
        self.progress.update(self.task, total=total, completed=0)

    def advance_bytes(self, done: int) -> None:
        """Move the bar."""
        self.done += done
        self.progress.advance(self.task, done)
        now = time.monotonic()
        if self.plain and self.total and now - self.logged >= self.LOG_EVERY:
            share = 100 * self.done / self.total
            self._line(f"{self.last}: {share:.0f}% ({self.done / 2**20:,.0f} of "
                       f"{self.total / 2**20:,.0f} MiB)")  # fmt: skip

    def _line(self, message: str) -> None:
        self.logged = time.monotonic()
        elapsed = self.logged - self.started
        err_console.print(f"[{elapsed:6.1f}s] {message}", markup=False, highlight=False)


def run_pipeline(
    stocks: list[str],
    funds: list[str],
    output: str,
    fmt: str,
    source_tz: str | None,
    config_path: Path | None,
    engine: str,
    master: str | None = None,
    spark_conf: dict[str, str] | None = None,
) -> int:
    """Run the pipeline; returns the exit code."""
    from digital_finance.engines.registry import EngineError, check_supported
    from digital_finance.logs import configure_from_environment

    configure_from_environment()

    try:
        config = load_config(config_path, source_tz)
        where = location(output, config.plain_storage_options())
        check_supported(
            build_pipeline(
                config.source_tz,
                config.expectations,
                config.rule_actions,
                config.enrichments,
                config.input_limits,
            ),
            engine,
        )
        store = InputStore(where.options)  # inputs behind URIs: the lakehouse's options
        inputs = {
            "stocks": resolve_inputs(stocks, store) if stocks else [],
            "mutual_funds": resolve_inputs(funds, store) if funds else [],
        }
    except (ConfigError, InputError, EngineError, StorageError, ValueError) as exc:
        fail(str(exc))

    started = time.perf_counter()
    try:
        with signals_raise():
            report = _ingest(where, config, inputs, engine, master, spark_conf)
    except Exception as exc:
        stop = received()
        if stop is None:
            raise
        return _stopped(stop, exc)
    except Interrupted as stop:
        return _stopped(stop, stop)
    except KeyboardInterrupt as stop:  # PySpark puts its own SIGINT handler in place of ours
        return _stopped(Interrupted(signal.SIGINT), stop)
    if fmt != "delta" and report.batches:
        from digital_finance.sinks.export import export_tables

        for path in export_tables(where, fmt):
            console.print(f"exported {path}")
    _print_report(report, time.perf_counter() - started, output)
    return 0 if report.ok else 1


def _stopped(stop: Interrupted, raised: BaseException) -> int:
    # the stage and the claimed batch were left on the objects the run was using
    stage, claimed = _where_it_stopped()
    err_console.print(interrupted_message(stage, claimed), markup=False, soft_wrap=True)
    return stop.code


_RUNNING: dict[str, Any] = {}  # the progress and lakehouse of the run in this process


def _where_it_stopped() -> tuple[str, int | None]:
    progress, lake = _RUNNING.get("progress"), _RUNNING.get("lake")
    stage = progress.last if progress is not None else "starting"
    return stage, lake.claimed_batch if lake is not None else None


def _ingest(
    where: Location,
    config: RunConfig,
    inputs: dict[str, list[InputFile]],
    engine: str,
    master: str | None,
    spark_conf: dict[str, str] | None,
) -> RunReport:
    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            # the bar redraws itself ten times a second on a thread that takes the
            # interpreter from the batch; a log file gets plain lines instead (`_line`)
            auto_refresh=err_console.is_terminal,
        ) as bar,
        _session(engine, progress := RichProgress(bar), master, spark_conf) as spark,
    ):
        _RUNNING["progress"] = progress
        try:
            lake = Lakehouse(where, config, engine=engine, spark=spark, progress=progress)
            _RUNNING["lake"] = lake
            return lake.ingest(inputs)
        except RuleFailedError as exc:
            _print_batch(exc.report)
            fail(str(exc), code=1)
        except TerminalError as exc:  # the message says what to change
            fail(str(exc))
        except TransientError as exc:  # nothing was committed that a retry would double
            fail(f"{exc}", code=EXIT_TRY_AGAIN)


@contextmanager
def _session(
    engine: str, progress: RichProgress, master: str | None, spark_conf: dict[str, str] | None
) -> Iterator[Any]:
    """The Spark session for `--engine spark` (stopped at the end if started here), else None."""
    if engine != "spark":
        yield None
        return
    try:
        from digital_finance.engines.spark.jars import SparkSetupError
        from digital_finance.engines.spark.session import engine_session
    except ImportError as exc:
        fail(
            f"the Spark engine needs PySpark and Delta Spark ({exc}); install them with "
            "pip install 'digital-finance[spark]' (or `make setup` in the repository)"
        )
    progress.stage("starting Spark")
    try:
        spark, owned = engine_session(master, spark_conf or {})
    except SparkSetupError as exc:
        fail(str(exc))
    try:
        yield spark
    finally:
        if owned:
            spark.stop()


def _print_batch(b: BatchReport) -> None:
    title = f"batch {b.batch_id}" + (" (resumed after an interruption)" if b.resumed else "")
    table = Table(title=title, title_justify="left")
    table.add_column("table")
    table.add_column("rows written by this batch", justify="right")
    for name, rows in b.written.items():
        if name.startswith("gold/"):  # gold is rebuilt: its count is the whole table
            table.add_row(f"{name} (rebuilt)", f"{rows:,} in all")
        else:
            table.add_row(name, f"{rows:,}")
    for name in b.skipped_tables:
        table.add_row(name, "already committed")
    console.print(table)
    rules = Table(
        title="rules broken (a record may break several, so these add up to more than the "
        "records quarantined)",
        title_justify="left",
    )
    for col in ("dataset", "rule", "action"):
        rules.add_column(col)
    rules.add_column("records", justify="right")
    rules.add_column("counted over")
    passed = []
    for r in b.rules:
        over = "all of silver" if r.rule == REFERENTIAL_INTEGRITY else "this batch"
        if r.failures:
            rules.add_row(r.dataset, r.rule, r.action, f"{r.failures:,}", over)
        else:
            passed.append(r.rule)
    if rules.row_count:
        console.print(rules)
    if passed:
        console.print(
            f"no failures ({len(passed)} rules): {', '.join(sorted(set(passed)))}",
            markup=False,
            soft_wrap=True,
        )
    if b.timings:
        spent = ", ".join(f"{k} {v:.1f}s" for k, v in b.timings.items())
        console.print(f"time per step: {spent}")
    if b.contract:
        console.print(f"records decided by {b.contract}", markup=False)
    read = ", ".join(f"{k} {v:,}" for k, v in b.records.items())
    console.print(f"records read: {read}; files: {b.files}")
    for warning in b.warnings:
        err_console.print(f"warning: {warning}", markup=False, soft_wrap=True)


def _print_report(report: RunReport, seconds: float, output: str) -> None:
    for note in report.notes:
        console.print(note, markup=False, soft_wrap=True)
    if report.taken_by_others:
        console.print(
            f"{report.taken_by_others} file(s) were ingested by another writer while this run "
            "read them; this run left them to it"
        )
    if not report.batches:
        console.print(
            f"nothing new to ingest: all {report.skipped_files} input file(s) were ingested "
            "before; no table changed."
        )
        return
    for b in report.batches:
        _print_batch(b)
    if report.skipped_files:
        console.print(f"skipped {report.skipped_files} file(s) ingested before")
    console.print(f"done in {seconds:.1f} s → {output}")
