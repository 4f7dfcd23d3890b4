"""The engine registry: every step of the pipeline has an implementation per engine, or the run is refused."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace

import pytest

from digital_finance.definition.pipeline import build_pipeline
from digital_finance.definition.steps import Step
from digital_finance.engines import registry
from digital_finance.engines.registry import EngineError, check_supported, implementation


@pytest.mark.parametrize("engine", registry.ENGINES)
def test_every_step_of_the_pipeline_resolves_to_code_of_that_engine(engine: str) -> None:
    pipeline = build_pipeline("UTC", (), {}, ())
    check_supported(pipeline, engine)
    for step in pipeline.steps:
        code = implementation(type(step), engine)
        assert callable(code)
        assert code.__module__.startswith(f"digital_finance.engines.{engine}."), (step, code)


def test_the_table_steps_are_methods_with_the_runner_signature() -> None:
    from digital_finance.definition.steps import LandBronze, MergeSilver, WriteQuarantine

    for engine in registry.ENGINES:
        for step_type in (LandBronze, WriteQuarantine, MergeSilver):
            params = list(inspect.signature(implementation(step_type, engine)).parameters)
            assert params == ["self", "staged", "step", "batch_id", "run_id", "now"], (
                engine,
                step_type,
            )


@dataclass(frozen=True)
class Forecast(Step):
    """A step no engine implements."""


def test_a_step_an_engine_lacks_is_refused_at_plan_time_naming_it() -> None:
    pipeline = build_pipeline("UTC", (), {}, ())
    with_new = replace(pipeline, steps=(*pipeline.steps, Forecast("forecast_prices")))
    with pytest.raises(
        EngineError,
        match=r"engine 'embedded' has no implementation of step\(s\) forecast_prices \(Forecast\)",
    ):
        check_supported(with_new, "embedded")
    with pytest.raises(EngineError, match="unknown engine 'flink'"):
        check_supported(pipeline, "flink")


def test_a_step_only_one_engine_has_is_refused_on_the_other_with_a_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from digital_finance.definition.steps import MergeSilver

    table = dict(registry.IMPLEMENTATIONS)
    del table[(MergeSilver, "spark")]
    monkeypatch.setattr(registry, "IMPLEMENTATIONS", table)
    pipeline = build_pipeline("UTC", (), {}, ())
    with pytest.raises(
        EngineError, match=r"silver_stocks \(MergeSilver\).*; engine 'embedded' can run it"
    ):
        check_supported(pipeline, "spark")
