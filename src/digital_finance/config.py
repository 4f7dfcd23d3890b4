"""The run configuration file (TOML): time zone, expectations, rule actions, engine knobs.

```toml
source_tz = "America/New_York"

[[expectations]]
name = "price_below_one_million"
dataset = "stocks"
condition = "price < 1000000"
action = "warn"

[rules]                    # raise a contract rule from quarantine to fail
invalid_price = "fail"

[[enrichments]]            # columns added to silver, on both engines (docs/ENRICHMENT.md)
name = "notional_value"

[engine]
memory_limit = "1GB"
silver_write = "auto"      # auto | rewrite | merge | rebuild (engines/embedded/silver_merge.py)
contract = "auto"          # auto | native | sql: who decides the contract (docs/NATIVE_KERNEL.md)
```
"""

from __future__ import annotations

import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digital_finance.definition.expectations import Action, Expectation
from digital_finance.errors import TerminalError

if TYPE_CHECKING:
    from digital_finance.enrichment import Enrichment


class ConfigError(TerminalError):
    """The configuration cannot be used; the message names the key and the fix."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs besides its inputs."""

    source_tz: str = "UTC"
    expectations: tuple[Expectation, ...] = ()
    rule_actions: dict[str, Action] = field(default_factory=dict)
    memory_limit: str = "1GB"
    threads: int | None = None
    silver_write: str = "auto"
    contract: str = "auto"
    enrichments: tuple[Enrichment, ...] = ()


def check_timezone(name: str) -> str:
    """The zone name, if the time-zone database knows it."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'America/New_York'"
        ) from exc
    return name


def _action(value: Any, where: str) -> Action:
    try:
        return Action(str(value).lower())
    except ValueError as exc:
        raise ConfigError(
            f"{where}: action must be warn, quarantine or fail, not {value!r}"
        ) from exc


def load_config(path: Path | None, source_tz: str | None = None) -> RunConfig:
    """Read the TOML file (if any); `source_tz` given on the command line wins."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    expectations = []
    for i, item in enumerate(data.get("expectations", []), start=1):
        where = f"expectations #{i}"
        missing = [k for k in ("name", "dataset", "condition") if k not in item]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        try:
            expectations.append(
                Expectation(
                    str(item["name"]),
                    str(item["dataset"]),
                    str(item["condition"]),
                    _action(item.get("action", "warn"), where),
                )
            )
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    rules = {str(k): _action(v, f"[rules] {k}") for k, v in dict(data.get("rules", {})).items()}
    engine = dict(data.get("engine", {}))
    tz = check_timezone(source_tz or str(data.get("source_tz", "UTC")))
    threads = engine.get("threads")
    silver_write = str(engine.get("silver_write", "auto"))
    if silver_write not in ("auto", "rewrite", "merge", "rebuild"):
        raise ConfigError(
            f"[engine] silver_write must be auto, rewrite, merge or rebuild, not {silver_write!r}"
        )
    contract = str(engine.get("contract", "auto"))
    if contract not in ("auto", "native", "sql"):
        raise ConfigError(f"[engine] contract must be auto, native or sql, not {contract!r}")
    items = data.get("enrichments", [])
    enrichments: tuple[Enrichment, ...] = ()
    if items:
        from digital_finance.enrichment import EnrichmentConfigError, load_enrichments

        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ConfigError("enrichments must be [[enrichments]] tables")
        base = path.parent if path is not None else Path.cwd()
        try:
            enrichments = load_enrichments(items, base)
        except EnrichmentConfigError as exc:
            raise ConfigError(f"[[enrichments]]: {exc}") from exc
    return RunConfig(
        source_tz=tz,
        expectations=tuple(expectations),
        rule_actions=rules,
        memory_limit=str(engine.get("memory_limit", "1GB")),
        threads=int(threads) if threads is not None else None,
        silver_write=silver_write,
        contract=contract,
        enrichments=enrichments,
    )
