"""Digital Finance: JSON financial events into exact, de-duplicated Delta Lake tables.

The public API (everything else is internal and may change)::

    from digital_finance import Lakehouse

    lake = Lakehouse("lakehouse")
    report = lake.ingest_files(stocks=["landing/stocks/"], funds=["landing/funds/"])
    silver = lake.read("silver.stocks")

Names load on first use, so `import digital_finance` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from digital_finance.api import Lakehouse, LoggedProgress
    from digital_finance.config import ConfigError, RunConfig, load_config
    from digital_finance.errors import DigitalFinanceError, TerminalError, TransientError
    from digital_finance.lakehouse.read_only import QueryRefusedError
    from digital_finance.runs.plan import BatchClaimError
    from digital_finance.runs.report import BatchReport, RuleFailedError, RunReport
    from digital_finance.sources.discovery import InputError
    from digital_finance.sources.file_scan import FileChangedError

__all__ = [
    "BatchClaimError",
    "BatchReport",
    "ConfigError",
    "DigitalFinanceError",
    "FileChangedError",
    "InputError",
    "Lakehouse",
    "LoggedProgress",
    "QueryRefusedError",
    "RuleFailedError",
    "RunConfig",
    "RunReport",
    "TerminalError",
    "TransientError",
    "load_config",
]

_HOMES = {
    "Lakehouse": "digital_finance.api",
    "LoggedProgress": "digital_finance.api",
    "ConfigError": "digital_finance.config",
    "RunConfig": "digital_finance.config",
    "load_config": "digital_finance.config",
    "DigitalFinanceError": "digital_finance.errors",
    "TerminalError": "digital_finance.errors",
    "TransientError": "digital_finance.errors",
    "QueryRefusedError": "digital_finance.lakehouse.read_only",
    "BatchClaimError": "digital_finance.runs.plan",
    "BatchReport": "digital_finance.runs.report",
    "RuleFailedError": "digital_finance.runs.report",
    "RunReport": "digital_finance.runs.report",
    "InputError": "digital_finance.sources.discovery",
    "FileChangedError": "digital_finance.sources.file_scan",
}

# a library never configures logging for its host; without a handler nothing is printed
logging.getLogger("digital_finance").addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'digital_finance' has no attribute {name!r}")
