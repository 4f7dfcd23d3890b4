"""Which engine runs which step type: checked when the run is planned, not mid-run."""

from __future__ import annotations

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

ALL_STEPS: frozenset[type[Step]] = frozenset(
    {
        ReadFiles,
        LandBronze,
        ApplyContract,
        CheckExpectations,
        WriteQuarantine,
        Deduplicate,
        Enrich,
        MergeSilver,
        JoinGold,
    }
)

SUPPORTED: dict[str, frozenset[type[Step]]] = {"embedded": ALL_STEPS, "spark": ALL_STEPS}


class EngineError(TerminalError):
    """The chosen engine cannot run this pipeline; the message says why and what to do."""


def check_supported(pipeline: Pipeline, engine: str) -> None:
    """Fail before any work when the engine lacks an implementation of some step."""
    if engine not in SUPPORTED:
        raise EngineError(f"unknown engine {engine!r}; available: {', '.join(SUPPORTED)}")
    missing = [s.step_id for s in pipeline.steps if type(s) not in SUPPORTED[engine]]
    if missing:
        raise EngineError(f"engine {engine!r} cannot run step(s): {', '.join(missing)}")
