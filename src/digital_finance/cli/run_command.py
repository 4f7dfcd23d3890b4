"""`digital-finance run`: plan, run, export, and print a summary the user can act on."""

from __future__ import annotations

import time
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from digital_finance.cli.console import console, err_console, fail
from digital_finance.config import ConfigError, load_config
from digital_finance.definition.pipeline import build_pipeline
from digital_finance.runs.report import BatchReport, RunReport
from digital_finance.sources.discovery import InputError, resolve_inputs


class RichProgress:
    """Progress on stderr: a byte bar while reading, a line per stage after."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=None)

    def stage(self, message: str) -> None:
        """Show the stage."""
        self.progress.update(self.task, description=message)

    def start_bytes(self, total: int) -> None:
        """Reset the bar to a new total."""
        self.progress.update(self.task, total=total, completed=0)

    def advance_bytes(self, done: int) -> None:
        """Move the bar."""
        self.progress.advance(self.task, done)


def run_pipeline(
    stocks: list[str],
    funds: list[str],
    output: Path,
    fmt: str,
    source_tz: str | None,
    config_path: Path | None,
    engine: str,
) -> int:
    """Run the pipeline; returns the exit code."""
    from digital_finance.engines.registry import EngineError, check_supported

    try:
        config = load_config(config_path, source_tz)
        pipeline = build_pipeline(config.source_tz, config.expectations, config.rule_actions)
        check_supported(pipeline, engine)
        inputs = {
            "stocks": resolve_inputs(stocks) if stocks else [],
            "mutual_funds": resolve_inputs(funds) if funds else [],
        }
    except (ConfigError, InputError, EngineError, ValueError) as exc:
        fail(str(exc))

    from digital_finance.engines.embedded.runner import (
        EmbeddedOptions,
        EmbeddedRunner,
        RuleFailedError,
    )
    from digital_finance.engines.embedded.staging import ExpectationError

    started = time.perf_counter()
    options = EmbeddedOptions(
        memory_limit=config.memory_limit,
        threads=config.threads,
        silver_write=config.silver_write,  # type: ignore[arg-type]  # checked by load_config
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        runner = EmbeddedRunner(pipeline, output, options, RichProgress(bar))
        try:
            report = runner.run(inputs)
        except RuleFailedError as exc:
            _print_batch(exc.report)
            fail(str(exc), code=1)
        except ExpectationError as exc:
            fail(str(exc))
        except InputError as exc:
            fail(str(exc))
    if fmt != "delta" and report.batches:
        from digital_finance.sinks.export import export_tables

        for path in export_tables(output, fmt):
            console.print(f"exported {path}")
    _print_report(report, time.perf_counter() - started, output)
    return 0 if report.ok else 1


def _print_batch(b: BatchReport) -> None:
    title = f"batch {b.batch_id}" + (" (resumed after an interruption)" if b.resumed else "")
    table = Table(title=title, title_justify="left")
    table.add_column("table")
    table.add_column("rows written", justify="right")
    for name, rows in b.written.items():
        table.add_row(name, f"{rows:,}")
    for name in b.skipped_tables:
        table.add_row(name, "already committed")
    console.print(table)
    rules = Table(title="rules", title_justify="left")
    for col in ("dataset", "rule", "action"):
        rules.add_column(col)
    rules.add_column("records", justify="right")
    for r in b.rules:
        if r.failures:
            rules.add_row(r.dataset, r.rule, r.action, f"{r.failures:,}")
    if rules.row_count:
        console.print(rules)
    if b.timings:
        spent = ", ".join(f"{k} {v:.1f}s" for k, v in b.timings.items())
        console.print(f"time per step: {spent}")
    read = ", ".join(f"{k} {v:,}" for k, v in b.records.items())
    console.print(f"records read: {read}; files: {b.files}")


def _print_report(report: RunReport, seconds: float, output: Path) -> None:
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
