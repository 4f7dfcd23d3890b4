"""The audit log: one JSON line per write request — who, which dataset, how many records,
the request id, the answer.

Lines are queued by the request as dicts and made text and written by a thread of their
own every 0.2 s (and at close), so a request pays for building a dict, not for JSON, the
logging machinery and a write to the terminal or disk (which cost a sixth of a
single-record request when it went through `logging`). The file is opened for appending;
rotate it with `copytruncate`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, TextIO

FLUSH_SECONDS = 0.2


class AuditLog:
    """Appends audit lines to a file (or stderr), from a background thread."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._out: TextIO = path.open("a", encoding="utf-8") if path is not None else sys.stderr
        self._lines: deque[dict[str, Any]] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
        self._thread.start()

    def write(self, line: dict[str, Any]) -> None:
        """Queue one line (written within `FLUSH_SECONDS`)."""
        line["time"] = time.time()
        self._lines.append(line)  # made text on the audit thread, off the request's path

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            self._flush()
        self._flush()

    def _flush(self) -> None:
        if not self._lines:
            return
        taken: list[str] = []
        while self._lines:
            taken.append(json.dumps(self._lines.popleft(), separators=(",", ":")))
        self._out.write("\n".join(taken) + "\n")
        self._out.flush()

    def close(self) -> None:
        """Write what is queued; close the file."""
        self._stop.set()
        self._thread.join(5)
        if self.path is not None:
            self._out.close()
