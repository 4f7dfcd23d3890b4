"""The pipeline, described once as immutable data and executed by any engine."""

from digital_finance.definition.expectations import Action, Expectation
from digital_finance.definition.pipeline import Pipeline, build_pipeline
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

__all__ = [
    "Action",
    "ApplyContract",
    "CheckExpectations",
    "Deduplicate",
    "Enrich",
    "Expectation",
    "JoinGold",
    "LandBronze",
    "MergeSilver",
    "Pipeline",
    "ReadFiles",
    "Step",
    "WriteQuarantine",
    "build_pipeline",
]
