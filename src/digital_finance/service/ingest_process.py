"""The ingester's own process: the stream loop over the service's log, into the lakehouse.

`service.ingester` starts it and talks to it through pipes: the spec arrives as one JSON
line on stdin (secrets stay out of the command line), and every committed batch goes back
as one JSON line on stdout — what it held, and the positions the tables now stand at, from
which the service trims its log. Closing stdin asks it to stop after the batch under way
(so does SIGTERM); SIGINT is left to the service, which passes the stop on. A separate
process because a batch's Python work would otherwise hold the interpreter's lock for tens
of milliseconds at a time, and every request waiting on the event loop would wait with it.

    python -m digital_finance.service.ingest_process   # spec on stdin; see `Ingester`
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from digital_finance.runs.report import RunReport


def main() -> int:
    """Run until stdin closes or SIGTERM; exit 0, or 1 after reporting the error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec: dict[str, Any] = json.loads(sys.stdin.readline())
    # before any thread starts: Linux gives a thread's priority to the threads it creates
    os.nice(int(spec.get("nice", 0)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=_watch, args=(stop,), name="stdin", daemon=True).start()
    try:
        from digital_finance.api import Lakehouse
        from digital_finance.config import load_config
        from digital_finance.lakehouse.storage import location
        from digital_finance.service.log_feed import LogFeed
        from digital_finance.service.log_reader import LogReader
        from digital_finance.streaming.loop import StreamLoop, StreamOptions

        config = load_config(Path(spec["config"]) if spec.get("config") else None)
        lake = Lakehouse(location(spec["output"], config.plain_storage_options()), config)
        with LogReader(Path(spec["log_dir"])) as reader:

            def committed(report: RunReport, held: int, seconds: float) -> None:
                _send(
                    {
                        "event": "batch",
                        "batches": [_batch(b) for b in report.batches],
                        "held": held,
                        "seconds": seconds,
                        "positions": dict(reader.committed),
                    }
                )

            loop = StreamLoop(
                lake,
                "api",
                # trimmed after every batch: the reader only notes the positions, which
                # the service gets with each batch's line
                lambda _lake: LogFeed(reader, trim_every_seconds=0.0),
                StreamOptions(**spec["stream"]),
                on_batch=committed,
            )
            _send({"event": "started"})
            loop.run(stop.is_set)
    except Exception as exc:  # reported to the service, which starts this process again
        _send({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


def _watch(stop: threading.Event) -> None:
    sys.stdin.read()  # returns at EOF: the service closed the pipe (or died)
    stop.set()


def _batch(b: Any) -> dict[str, Any]:
    return {
        "batch_id": b.batch_id,
        "status": b.status,
        "records": b.records,
        "rules": [[r.dataset, r.rule, r.action, r.failures] for r in b.rules],
    }


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
