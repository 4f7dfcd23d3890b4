"""What a run reports: per-table row counts, per-rule failures, timing. Engine-independent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from digital_finance.errors import TerminalError


class Progress(Protocol):
    """Where an engine reports progress; the CLI draws it, tests ignore it."""

    def stage(self, message: str) -> None:
        """A new stage of work begins."""

    def start_bytes(self, total: int) -> None:
        """Reading begins; `total` bytes of input in all."""

    def advance_bytes(self, done: int) -> None:
        """`done` more bytes were read."""


@dataclass(frozen=True)
class RuleFailures:
    """Failures of one rule in one dataset."""

    dataset: str
    rule: str
    action: str
    failures: int


@dataclass
class BatchReport:
    """The outcome of one batch."""

    batch_id: int
    run_id: str
    status: str  # succeeded | failed
    files: int = 0
    records: dict[str, int] = field(default_factory=dict)  # dataset -> records read
    written: dict[str, int] = field(default_factory=dict)  # table -> rows written this batch
    skipped_tables: list[str] = field(default_factory=list)  # already committed (resume)
    rules: list[RuleFailures] = field(default_factory=list)
    reference_rows: int = 0
    contract: str = ""  # what decided the records, when the engine says (shown in the summary)
    integrity_warnings: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # step id -> seconds
    seconds: float = 0.0
    error: str | None = None
    resumed: bool = False
    warnings: list[str] = field(default_factory=list)  # e.g. a file given as the wrong dataset


@dataclass
class RunReport:
    """The outcome of a `run`: the batches it committed (possibly none)."""

    batches: list[BatchReport] = field(default_factory=list)
    skipped_files: int = 0
    taken_by_others: int = 0  # new when this run planned, ingested by another writer since
    notes: list[str] = field(default_factory=list)  # what the plan decided about odd files
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every batch succeeded."""
        return all(b.status == "succeeded" for b in self.batches)


class RuleFailedError(TerminalError):
    """A `fail` expectation fired; nothing was committed for the batch."""

    def __init__(self, report: BatchReport, failed: list[RuleFailures]) -> None:
        names = ", ".join(f"{r.dataset}.{r.rule} ({r.failures} records)" for r in failed)
        super().__init__(f"fail rule(s) fired: {names}; nothing was committed to silver or gold")
        self.report = report
        self.failed = failed

    def __reduce__(self) -> tuple[type[RuleFailedError], tuple[BatchReport, list[RuleFailures]]]:
        return type(self), (self.report, self.failed)


def check_fail_rules(report: BatchReport) -> None:
    """Raise `RuleFailedError` when a `fail` rule has failures (before any commit)."""
    failed = [r for r in report.rules if r.action == "fail" and r.failures > 0]
    if failed:
        raise RuleFailedError(report, failed)
