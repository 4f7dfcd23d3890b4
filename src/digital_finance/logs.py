"""Log output for applications that run the pipeline: plain text or one JSON object a line.

The library only logs to the `digital_finance` logger; handlers are the application's
choice. The CLI calls `configure` when `DIGITAL_FINANCE_LOG_LEVEL` or
`DIGITAL_FINANCE_LOG_FORMAT=json` is set, so a scheduled run can ship its log lines.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

# attributes a record may carry through `extra=`, copied into the JSON line
CONTEXT = ("run_id", "batch_id", "table", "rows")


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the run context."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT:
            if hasattr(record, key):
                line[key] = getattr(record, key)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send the `digital_finance` logger's records to `stream` (stderr) as text or JSON."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("digital_finance")
    logger.addHandler(handler)
    logger.setLevel(level.upper())


def configure_from_environment() -> None:
    """`configure` from DIGITAL_FINANCE_LOG_LEVEL / DIGITAL_FINANCE_LOG_FORMAT, when set."""
    level = os.environ.get("DIGITAL_FINANCE_LOG_LEVEL")
    fmt = os.environ.get("DIGITAL_FINANCE_LOG_FORMAT")
    if level or fmt:
        configure(level or "INFO", fmt or "text")
