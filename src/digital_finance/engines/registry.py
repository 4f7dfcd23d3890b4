"""Which engine runs which step type, and with what: checked when the run is planned.

The table maps (step type, engine) to the code that implements the step on that engine, as
`module:Class.attribute` text so that no engine is imported to plan a run. The table steps
(bronze, quarantine, silver, gold) are dispatched through it by `runs.batch_runner`; the
staging steps (read, contract, expectations, de-duplication, enrichment) are implemented
together by each engine's staging, named here so that a pipeline with a step an engine lacks
is refused before any work, with the step and the engine named.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any

from digital_finance.definition.pipeline import Pipeline
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
from digital_finance.errors import TerminalError

_EMBEDDED = "digital_finance.engines.embedded"
_SPARK = "digital_finance.engines.spark"

IMPLEMENTATIONS: dict[tuple[type[Step], str], str] = {
    (ReadFiles, "embedded"): f"{_EMBEDDED}.staging:StagedDataset.load_files",
    (ApplyContract, "embedded"): f"{_EMBEDDED}.staging:StagedDataset.load_files",
    (CheckExpectations, "embedded"): f"{_EMBEDDED}.staging:StagedDataset.rule_counts",
    (Deduplicate, "embedded"): f"{_EMBEDDED}.staging:StagedDataset.latest",
    (Enrich, "embedded"): f"{_EMBEDDED}.enrich:enriched",
    (LandBronze, "embedded"): f"{_EMBEDDED}.runner:EmbeddedRunner.land_bronze",
    (WriteQuarantine, "embedded"): f"{_EMBEDDED}.runner:EmbeddedRunner.write_quarantine",
    (MergeSilver, "embedded"): f"{_EMBEDDED}.runner:EmbeddedRunner.merge_silver",
    (JoinGold, "embedded"): f"{_EMBEDDED}.runner:EmbeddedRunner.rebuild_gold",
    (ReadFiles, "spark"): f"{_SPARK}.staging:SparkStagedDataset",
    (ApplyContract, "spark"): f"{_SPARK}.staging:SparkStagedDataset",
    (CheckExpectations, "spark"): f"{_SPARK}.staging:SparkStagedDataset.rule_counts",
    (Deduplicate, "spark"): f"{_SPARK}.staging:SparkStagedDataset.latest",
    (Enrich, "spark"): f"{_SPARK}.enrich:enriched",
    (LandBronze, "spark"): f"{_SPARK}.runner:SparkRunner.land_bronze",
    (WriteQuarantine, "spark"): f"{_SPARK}.runner:SparkRunner.write_quarantine",
    (MergeSilver, "spark"): f"{_SPARK}.runner:SparkRunner.merge_silver",
    (JoinGold, "spark"): f"{_SPARK}.runner:SparkRunner.rebuild_gold",
}
ENGINES = ("embedded", "spark")


class EngineError(TerminalError):
    """The chosen engine cannot run this pipeline; the message says why and what to do."""


def check_supported(pipeline: Pipeline, engine: str) -> None:
    """Fail before any work when the engine lacks an implementation of some step."""
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}; available: {', '.join(ENGINES)}")
    missing = [
        f"{s.step_id} ({type(s).__name__})"
        for s in pipeline.steps
        if (type(s), engine) not in IMPLEMENTATIONS
    ]
    if missing:
        others = [e for e in ENGINES if e != engine and _runs_all(pipeline, e)]
        hint = f"; engine {others[0]!r} can run it" if others else ""
        raise EngineError(
            f"engine {engine!r} has no implementation of step(s) {', '.join(missing)}{hint}"
        )


def _runs_all(pipeline: Pipeline, engine: str) -> bool:
    return all((type(s), engine) in IMPLEMENTATIONS for s in pipeline.steps)


def implementation(step_type: type[Step], engine: str) -> Callable[..., Any]:
    """The code that runs `step_type` on `engine` (imported on first use)."""
    return _resolve(IMPLEMENTATIONS.get((step_type, engine)), step_type.__name__, engine)


@cache
def _resolve(where: str | None, step: str, engine: str) -> Callable[..., Any]:
    if where is None:
        raise EngineError(f"engine {engine!r} has no implementation of {step}")
    module, _, attributes = where.partition(":")
    found: Any = importlib.import_module(module)
    for name in attributes.split("."):
        found = getattr(found, name)
    return found  # type: ignore[no-any-return]
