"""`digital-finance config check [FILE]`: the effective settings, and where each came from.

Every key is checked as a run checks it (unknown keys, bad values, expectations, rules,
enrichments, secrets that cannot be found), then each setting is printed with its source:
the environment (and which variable), the file, or the default. Secrets are named, never
shown.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from digital_finance.cli.console import console, fail


def check(path: Path | None) -> None:
    """Validate the configuration a run would use and print it with its sources."""
    from digital_finance import settings as st
    from digital_finance.config import ConfigError, load_config

    data: dict[str, Any] = {}
    try:
        config = load_config(path)  # every check a run makes, secrets resolved included
        if path is not None:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        found = st.read_settings(data, f"config file {path}" if path else "settings")
    except (ConfigError, st.SettingsError) as exc:
        fail(str(exc))
    console.print(f"configuration: {path if path else 'no file'} (valid)", markup=False)
    for key, value, source in _leaves(found, data, st.ENV_PREFIX):
        console.print(f"  {key} = {value}    ({source})", markup=False, soft_wrap=True)
    for e in config.expectations:
        console.print(
            f"  expectation {e.name} on {e.dataset}: {e.condition} → {e.action.value}    (file)",
            markup=False,
        )
    for name, action in config.rule_actions.items():
        console.print(f"  rule {name} → {action.value}    (file)", markup=False)
    for enrichment in config.enrichments:
        console.print(f"  enrichment {enrichment.name} on {enrichment.dataset}    (file)")


_LISTED_APART = {"expectations", "rules", "enrichments"}  # printed from the checked config


def _leaves(
    model: BaseModel, data: dict[str, Any], prefix: str, path: tuple[str, ...] = ()
) -> list[tuple[str, str, str]]:
    """(dotted key, shown value, source) of every setting under `model`."""
    out = []
    for name in type(model).model_fields:
        if not path and name in _LISTED_APART:
            continue
        value = getattr(model, name)
        here = (*path, name)
        if isinstance(value, BaseModel) and not _is_secret(value):
            out += _leaves(value, data, prefix, here)
            continue
        if isinstance(value, dict):
            for key, item in value.items():
                out.append((".".join((*here, key)), _shown(item), _source(data, prefix, here)))
            continue
        out.append((".".join(here), _shown(value), _source(data, prefix, here)))
    return out


def _is_secret(value: object) -> bool:
    return type(value).__name__ == "SecretRef"


def _shown(value: object) -> str:
    if _is_secret(value):
        return f'secret "{value.secret}" (value not shown)'  # type: ignore[attr-defined]
    if isinstance(value, str | Path):
        return f'"{value}"'
    return "unset" if value is None else str(value)


def _source(data: dict[str, Any], prefix: str, path: tuple[str, ...]) -> str:
    variable = prefix + "__".join(p.upper() for p in path)
    if variable in os.environ:
        return f"environment: {variable}"
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return "default"
        node = node[part]
    return "file"
