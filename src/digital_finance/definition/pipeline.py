"""Build the pipeline definition from the contract and the user's configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from digital_finance.contract.schemas import DATASETS, FUNDS, STOCKS
from digital_finance.definition.expectations import Action, Expectation
from digital_finance.definition.steps import (
    ApplyContract,
    CheckExpectations,
    Deduplicate,
    Enrich,
    JoinGold,
    LandBronze,
    MergeSilver,
    ReadFiles,
    Step,
    WriteQuarantine,
)
from digital_finance.lakehouse.layout import TABLES
from digital_finance.sources.input_limits import InputLimits

if TYPE_CHECKING:
    from digital_finance.enrichment import Enrichment

GOLD_COLUMNS = (
    "fund_id",
    "fund_name",
    "company_id",
    "stock_id",
    "symbol",
    "price",
    "currency",
    "holding_weight",
    "nav",
    "as_of",
    "event_time",
)

# the stock's own columns; `company_id` (the join key) and the rest come from the holding
GOLD_FROM_STOCKS = frozenset({"stock_id", "symbol", "price", "currency", "event_time"})

REFERENTIAL_INTEGRITY = "holding_has_stock"
StepT = TypeVar("StepT", bound=Step)


@dataclass(frozen=True)
class Pipeline:
    """The whole definition: ordered steps plus the expectations they apply."""

    steps: tuple[Step, ...]
    expectations: tuple[Expectation, ...]
    source_tz: str

    def steps_of(self, kind: type[StepT]) -> list[StepT]:
        """The steps of one type, in order."""
        return [s for s in self.steps if isinstance(s, kind)]

    def enrichments_for(self, dataset: str) -> tuple[Enrichment, ...]:
        """The enrichments applied to a dataset's silver candidates, in order."""
        return tuple(
            e for s in self.steps_of(Enrich) if s.dataset == dataset for e in s.enrichments
        )

    def input_limits(self, dataset: str) -> InputLimits:
        """The limits a dataset's inputs are read within."""
        return next(s.limits for s in self.steps_of(ReadFiles) if s.dataset == dataset)

    def expectations_for(self, dataset: str) -> tuple[Expectation, ...]:
        """User and built-in expectations of one dataset."""
        return tuple(e for e in self.expectations if e.dataset == dataset)


def builtin_expectations(overrides: dict[str, Action]) -> list[Expectation]:
    """The contract's rules as expectations (action quarantine unless raised to fail)."""
    rules: list[Expectation] = []
    for spec in (STOCKS, FUNDS):
        for field in spec.fields:
            for reason in (field.missing_reason, field.invalid_reason):
                rules.append(
                    Expectation(
                        reason, spec.name, None, overrides.get(reason, Action.QUARANTINE), True
                    )
                )
    rules.append(
        Expectation(
            REFERENTIAL_INTEGRITY,
            FUNDS.name,
            None,
            overrides.get(REFERENTIAL_INTEGRITY, Action.WARN),
            True,
        )
    )
    return rules


def build_pipeline(
    source_tz: str = "UTC",
    user_expectations: tuple[Expectation, ...] = (),
    rule_actions: dict[str, Action] | None = None,
    enrichments: tuple[Enrichment, ...] = (),
    input_limits: InputLimits | None = None,
) -> Pipeline:
    """The batch pipeline: files → bronze → contract → quarantine/silver → gold."""
    overrides = rule_actions or {}
    for name, action in overrides.items():
        if action is Action.WARN and name != REFERENTIAL_INTEGRITY:
            raise ValueError(
                f"contract rule {name!r} cannot be lowered to warn: a record that breaks the "
                "contract cannot be typed into silver (use quarantine or fail)"
            )
    if overrides.get(REFERENTIAL_INTEGRITY, Action.WARN) is not Action.WARN:
        raise ValueError(
            f"{REFERENTIAL_INTEGRITY} is a warning only: gold is rebuilt after silver is "
            "committed, so it cannot stop the run"
        )
    builtins = builtin_expectations(overrides)
    known = {e.name for e in builtins}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown contract rule(s) in [rules]: {', '.join(sorted(unknown))}")
    for e in user_expectations:
        if e.dataset not in DATASETS:
            raise ValueError(
                f"expectation {e.name!r}: dataset must be one of {', '.join(DATASETS)}"
            )
        if e.name in known:
            raise ValueError(f"expectation {e.name!r} has the name of a contract rule")
    steps: list[Step] = []
    for spec in (STOCKS, FUNDS):
        name = spec.name
        steps += [
            ReadFiles(f"read_{name}", name, input_limits or InputLimits()),
            LandBronze(f"bronze_{name}", name, TABLES.bronze(name)),
            ApplyContract(f"contract_{name}", spec, source_tz),
            CheckExpectations(
                f"expectations_{name}",
                name,
                tuple(e for e in user_expectations if e.dataset == name),
            ),
            WriteQuarantine(f"quarantine_{name}", name, TABLES.quarantine(name)),
            Deduplicate(f"dedup_{name}", name, spec.key, spec.event_time),
        ]
        mine = tuple(e for e in enrichments if e.dataset == name)
        if mine:
            steps.append(Enrich(f"enrich_{name}", name, mine))
        steps += [
            MergeSilver(f"silver_{name}", name, TABLES.silver(name), spec.key, spec.event_time),
        ]
    ri = next(e for e in builtins if e.name == REFERENTIAL_INTEGRITY)
    steps.append(
        JoinGold(
            "gold_stock_fund_holdings",
            TABLES.gold,
            TABLES.silver(FUNDS.name),
            TABLES.silver(STOCKS.name),
            "company_id",
            GOLD_COLUMNS,
            ri,
            GOLD_FROM_STOCKS,
        )
    )
    return Pipeline(tuple(steps), tuple(builtins) + tuple(user_expectations), source_tz)
