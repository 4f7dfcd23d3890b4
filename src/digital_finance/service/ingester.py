"""Moves the durable log into the lakehouse: a child process, started and watched here.

The log is one more source with positions (`service.log_feed`): the child
(`service.ingest_process`) cuts it into micro-batches and ingests each exactly once, so the
records of many requests make one Delta commit per table, never one per request. The child
runs apart from the service's event loop, so a batch never stalls a request (it did, by
100 ms at a time, on a thread of the same process).

A child that fails (the storage is away, a commit conflict that outlasted its retries, a
`fail` rule) stops, not the service: requests are still made durable, `/readyz` reports the
error, and a new child starts after a pause that doubles up to a minute — from the
positions in the tables, so nothing is lost or doubled by the restart. The child reports
each batch's positions; the service trims its log by them (it owns the files).
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from digital_finance.runs.report import BatchReport, RuleFailures, RunReport
from digital_finance.service.durable_log import DurableLog
from digital_finance.service.metrics import ServiceMetrics
from digital_finance.streaming.loop import StreamOptions

log = logging.getLogger(__name__)

MAX_PAUSE = 60.0
TRIM_EVERY = 10.0  # seconds between trims of the log: each lists and fsyncs folders


@dataclass
class IngestState:
    """What `/readyz` and `/metrics` read of the ingester."""

    running: bool = False
    batches: int = 0
    records: int = 0
    error: str | None = None  # the last failure, until a batch succeeds again
    failures: int = 0
    positions: dict[str, int] = field(default_factory=dict)  # dataset -> in the tables


class Ingester:
    """Runs `ingest_process` until stopped, starting it again when it fails."""

    def __init__(
        self,
        output: str,
        config: Path | None,
        durable: DurableLog,
        options: StreamOptions,
        metrics: ServiceMetrics,
        *,
        nice: int = 0,
    ) -> None:
        self.spec = {
            "output": output,
            "config": str(config) if config is not None else None,
            "log_dir": str(durable.folder),
            "nice": nice,
            "stream": {
                "trigger_seconds": options.trigger_seconds,
                "max_batch_records": options.max_batch_records,
                "maintain_every_seconds": options.maintain_every_seconds,
            },
        }
        self.durable = durable
        self.metrics = metrics
        self.state = IngestState()
        self._stop = threading.Event()
        self._child: subprocess.Popen[str] | None = None
        self._trimmed = 0.0
        self._thread = threading.Thread(target=self._run, name="ingester", daemon=True)

    def start(self) -> None:
        """Begin ingesting."""
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the batch under way commits (what is left stays in the log)."""
        self._stop.set()
        child = self._child
        if child is not None and child.stdin is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()  # the child's signal to stop after its batch
        self._thread.join(timeout)
        if child is not None and child.poll() is None:
            child.kill()  # safe: the next start finishes its batch from the tables
            child.wait()

    @property
    def alive(self) -> bool:
        """Whether the supervising thread is still there (it only ends when stopped)."""
        return self._thread.is_alive()

    def _run(self) -> None:
        pause = 1.0
        while not self._stop.is_set():
            before = self.state.batches
            code = self._once()
            if self._stop.is_set():
                return
            if self.state.error is None:
                self.state.error = f"the ingester exited with code {code}"
            self.state.failures += 1
            log.error("ingesting the log failed (again in %.0f s): %s", pause, self.state.error)
            if self.state.batches > before:
                pause = 1.0  # it worked for a while: a new failure starts the pauses over
            self._stop.wait(pause)
            pause = min(MAX_PAUSE, pause * 2)

    def _once(self) -> int:
        child = subprocess.Popen(
            [sys.executable, "-m", "digital_finance.service.ingest_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._child = child
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(self.spec) + "\n")
        child.stdin.flush()
        if self._stop.is_set():
            child.stdin.close()
        self._read(child.stdout)
        return child.wait()

    def _read(self, lines: IO[str]) -> None:
        for line in lines:
            try:
                message: dict[str, Any] = json.loads(line)
            except ValueError:
                continue  # not ours: a library printed something
            event = message.get("event")
            if event == "started":
                self.state.running = True
            elif event == "batch":
                self._batch(message)
            elif event == "error":
                self.state.error = str(message.get("error"))
        self.state.running = False

    def _batch(self, message: dict[str, Any]) -> None:
        report = RunReport(
            batches=[
                BatchReport(
                    b["batch_id"], "", b["status"], records=dict(b["records"]),
                    rules=[RuleFailures(*r) for r in b["rules"]],
                )
                for b in message["batches"]
            ]
        )  # fmt: skip
        for b in report.batches:
            self.state.batches += 1
            self.state.records += sum(b.records.values())
        self.state.error = None
        self.metrics.stream.batch(report, float(message["seconds"]), None)
        positions = {str(k): int(v) for k, v in message.get("positions", {}).items()}
        if not positions:
            return
        self.state.positions = positions
        for dataset, behind in self.durable.backlog(positions).items():
            self.metrics.backlog.labels(dataset).set(behind)
        now = time.monotonic()
        if now - self._trimmed >= TRIM_EVERY:
            self._trimmed = now
            try:
                self.durable.trim(positions)
                self.metrics.log_bytes.set(self.durable.size_bytes())
            except OSError as exc:  # space comes back at the next trim
                log.warning("the log was not trimmed: %s", exc)
