"""The steps of the pipeline, as frozen data with stable ids.

A step says *what* happens to which dataset, never *how*: each engine registers an
implementation per step type (see `engines.registry`). Step ids are stable and double as
quarantine `step` values, run-log keys and, later, metric labels and checkpoint names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from digital_finance.contract.schemas import DatasetSpec
from digital_finance.definition.expectations import Expectation
from digital_finance.definition.rules import LatestWins
from digital_finance.sources.input_limits import InputLimits

if TYPE_CHECKING:
    from digital_finance.enrichment import Enrichment


@dataclass(frozen=True)
class Step:
    """Common to every step: a stable id."""

    step_id: str


@dataclass(frozen=True)
class ReadFiles(Step):
    """Read one dataset's input files as raw records with their positions, within limits."""

    dataset: str
    limits: InputLimits = field(default_factory=InputLimits)


@dataclass(frozen=True)
class LandBronze(Step):
    """Append every non-blank record, as received, with where it came from."""

    dataset: str
    table: str


@dataclass(frozen=True)
class ApplyContract(Step):
    """Parse and type each record by the contract; broken rules become reasons."""

    spec: DatasetSpec
    source_tz: str


@dataclass(frozen=True)
class CheckExpectations(Step):
    """Evaluate the user's expectations on the records that passed the contract."""

    dataset: str
    expectations: tuple[Expectation, ...]


@dataclass(frozen=True)
class WriteQuarantine(Step):
    """Append every rejected record with its reasons."""

    dataset: str
    table: str


@dataclass(frozen=True)
class Deduplicate(Step):
    """Keep one record per key: latest event time, then the one received last."""

    dataset: str
    key: tuple[str, ...]
    event_time: str


@dataclass(frozen=True)
class Enrich(Step):
    """Add the enrichments' columns to the batch's silver candidates (Arrow batches)."""

    dataset: str
    enrichments: tuple[Enrichment, ...]


@dataclass(frozen=True)
class MergeSilver(Step):
    """MERGE the batch's latest records into silver, keeping the latest per key."""

    dataset: str
    table: str
    key: tuple[str, ...]
    event_time: str

    @property
    def rule(self) -> LatestWins:
        """Which record of a key silver keeps (rendered by each engine)."""
        return LatestWins(self.key, self.event_time)


@dataclass(frozen=True)
class JoinGold(Step):
    """Rebuild gold: fund holdings inner-joined with stocks on the company."""

    table: str
    holdings: str  # silver table of fund holdings
    stocks: str  # silver table of stocks
    on: str
    columns: tuple[str, ...]
    integrity_check: Expectation  # counts holdings without a stock
    from_stocks: frozenset[str] = frozenset()  # gold columns taken from stocks; the rest: holdings
