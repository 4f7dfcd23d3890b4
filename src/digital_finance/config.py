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
silver_write = "auto"      # auto | mark | rewrite | merge | rebuild (embedded/silver_merge.py)
gold_write = "auto"        # auto | increment | whole (engines/embedded/gold.py)
contract = "auto"          # auto | native | sql: who decides the contract (docs/NATIVE_KERNEL.md)

[input]                    # the reader's limits, in bytes (docs/CONTRACT_RULES.md, "Limits")
max_record_bytes = 16777216
```
"""

from __future__ import annotations

import os
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digital_finance.definition.expectations import Action, Expectation
from digital_finance.errors import TerminalError
from digital_finance.lakehouse.maintenance import MaintenancePolicy
from digital_finance.sources.input_limits import InputLimits

if TYPE_CHECKING:
    from digital_finance.enrichment import Enrichment


SETTINGS_SECTIONS = (
    "source_tz", "engine", "input", "storage", "secrets", "stream", "maintenance", "api",
    "expectations", "rules", "enrichments",
)  # fmt: skip


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
    gold_write: str = "auto"
    contract: str = "auto"
    enrichments: tuple[Enrichment, ...] = ()
    # [storage] options with secrets resolved; values are pydantic SecretStr (masked in repr)
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    input_limits: InputLimits = field(default_factory=InputLimits)
    maintenance: MaintenancePolicy = field(default_factory=MaintenancePolicy)
    # the validated settings (`settings.Settings`), for what only some commands read
    # (`[stream]`); None when a run had none and pydantic was not imported
    settings: Any = field(default=None, compare=False)

    def plain_storage_options(self) -> dict[str, str]:
        """The storage options with their secret values, for the storage clients only."""
        return {k: v.get_secret_value() for k, v in self.storage_options.items()}


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
    """Read the TOML file (if any) under the environment; `source_tz` given as a flag wins.

    Settings come from `settings.Settings` (environment, then file, then defaults); a run
    with no file and no settings in its environment takes the defaults without importing
    pydantic (0.13 s).
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    if not data and not _settings_in_environment():
        return RunConfig(source_tz=check_timezone(source_tz or "UTC"))
    from digital_finance import settings as st

    try:
        found = st.read_settings(data, f"config file {path}" if path else "settings")
        options = st.storage_options(found)
    except st.SettingsError as exc:
        raise ConfigError(str(exc)) from None
    expectations = []
    for i, item in enumerate(found.expectations, start=1):
        where = f"[[expectations]] #{i}"
        try:
            expectations.append(
                Expectation(item.name, item.dataset, item.condition, _action(item.action, where))
            )
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    rules = {str(k): _action(v, f"[rules] {k}") for k, v in found.rules.items()}
    tz = check_timezone(source_tz or found.source_tz)
    items = found.enrichments
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
    engine = found.engine
    return RunConfig(
        source_tz=tz,
        expectations=tuple(expectations),
        rule_actions=rules,
        memory_limit=engine.memory_limit,
        threads=engine.threads,
        silver_write=engine.silver_write,
        gold_write=engine.gold_write,
        contract=engine.contract,
        enrichments=enrichments,
        storage_options=options,
        input_limits=found.input.limits(),
        maintenance=found.maintenance.policy(),
        settings=found,
    )


def _settings_in_environment() -> bool:
    # the names are those of `settings.Settings`'s fields; a test holds the two lists equal
    prefixes = tuple(f"DIGITAL_FINANCE_{name.upper()}" for name in SETTINGS_SECTIONS)
    return any(key.upper().startswith(prefixes) for key in os.environ)
