"""Enrichments from the config file's `[[enrichments]]` tables.

```toml
[[enrichments]]
name = "sector"                             # a built-in; the other keys are its options
reference = "data/reference/sectors.csv"

[[enrichments]]
function = "my_company.enrich:risk_bucket"  # your factory; the other keys are its options
threshold = "1000000"
```

A factory is called with the options as keyword arguments and returns an `Enrichment`. If it
has a `base_dir` parameter it also gets the config file's folder, to resolve relative paths.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from digital_finance.enrichment.base import Enrichment, EnrichmentConfigError
from digital_finance.enrichment.builtin import exchange_mic, notional_value, sector
from digital_finance.enrichment.columns import validate_inputs

Factory = Callable[..., Enrichment]

BUILTINS: Final[dict[str, Factory]] = {
    "notional_value": notional_value,
    "exchange_mic": exchange_mic,
    "sector": sector,
}

_FUNCTION: Final = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")


def _import_factory(spec: object) -> Factory:
    """The callable named by 'package.module:factory'."""
    if not isinstance(spec, str) or not _FUNCTION.match(spec):
        raise EnrichmentConfigError(
            f'function = {spec!r} must name a factory as "package.module:factory"'
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise EnrichmentConfigError(
            f"function = {spec!r}: cannot import {module_name!r} ({exc}); install it where "
            "the pipeline runs (on Spark, on the workers too) or add its folder to PYTHONPATH"
        ) from exc
    except Exception as exc:
        raise EnrichmentConfigError(
            f"function = {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    target: object = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise EnrichmentConfigError(
                f"function = {spec!r}: {module_name!r} has no attribute {attr!r}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise EnrichmentConfigError(f"function = {spec!r}: {attr!r} is not callable")
    return target  # callable; what it returns is checked by load_enrichment


def _parameters(factory: Factory) -> inspect.Signature | None:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):  # some C callables have no signature; just call them
        return None


def load_enrichment(item: Mapping[str, Any], base_dir: Path) -> Enrichment:
    """The enrichment one `[[enrichments]]` table describes; `base_dir` is the config's folder."""
    if not isinstance(item, Mapping):
        raise EnrichmentConfigError(f"an [[enrichments]] entry must be a table, got {item!r}")
    options = dict(item)
    name, function = options.pop("name", None), options.pop("function", None)
    if (name is None) == (function is None):
        raise EnrichmentConfigError(
            'an [[enrichments]] entry needs exactly one of name = "<built-in>" '
            f'(one of {", ".join(BUILTINS)}) or function = "package.module:factory"'
        )
    if name is not None:
        if not isinstance(name, str) or name not in BUILTINS:
            raise EnrichmentConfigError(
                f"unknown built-in enrichment {name!r}; the built-ins are "
                f'{", ".join(BUILTINS)}; for your own use function = "package.module:factory"'
            )
        factory, label = BUILTINS[name], f"enrichment {name!r}"
    else:
        factory, label = _import_factory(function), f"enrichment function {function!r}"
    if "base_dir" in options:
        raise EnrichmentConfigError(
            f"{label}: base_dir is not an option; relative paths are taken from the config "
            "file's folder"
        )
    signature = _parameters(factory)
    if signature is not None and "base_dir" in signature.parameters:
        options["base_dir"] = base_dir
    if signature is not None:
        try:
            signature.bind(**options)
        except TypeError as exc:
            raise EnrichmentConfigError(
                f"{label}: the options do not fit {getattr(factory, '__name__', 'the factory')}"
                f"{signature}: {exc}"
            ) from None
    try:
        result = factory(**options)
    except EnrichmentConfigError:
        raise
    except Exception as exc:
        raise EnrichmentConfigError(f"{label}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, Enrichment):
        raise EnrichmentConfigError(
            f"{label}: the factory returned {type(result).__name__}, not an Enrichment; "
            "return digital_finance.enrichment.Enrichment(...)"
        )
    validate_inputs(result)
    return result


def load_enrichments(items: Iterable[Mapping[str, Any]], base_dir: Path) -> tuple[Enrichment, ...]:
    """Every `[[enrichments]]` entry, in order, checked to add distinct, new columns."""
    if isinstance(items, str | bytes | Mapping):
        raise EnrichmentConfigError(
            "enrichments must be an array of tables: write each one under [[enrichments]]"
        )
    loaded: list[Enrichment] = []
    for number, item in enumerate(items, start=1):
        try:
            loaded.append(load_enrichment(item, base_dir))
        except EnrichmentConfigError as exc:
            raise EnrichmentConfigError(f"[[enrichments]] #{number}: {exc}") from exc
    # Outputs named like a silver or system column cannot exist: `Enrichment` refuses them
    # when it is made. What is left to check is two entries adding one column.
    producers: dict[tuple[str, str], tuple[int, Enrichment]] = {}
    for number, e in enumerate(loaded, start=1):
        for column in e.output_names:
            if (e.dataset, column) in producers:
                first, other = producers[(e.dataset, column)]
                raise EnrichmentConfigError(
                    f"[[enrichments]] #{first} ({other.name}) and #{number} ({e.name}) both "
                    f"add column {column!r} to {e.dataset}; keep one of them"
                )
            producers[(e.dataset, column)] = (number, e)
    return tuple(loaded)
