"""The Spark engine's progress: Spark's own task counts, polled while a run works.

The files of a batch are read by Spark's Python tasks, so the driver never sees their bytes
go by; what it can see is its status tracker (active stages, tasks done of tasks in all).
A thread polls it and hands the count to the run's progress, which shows it on the bar or,
in a log file, as a timed line now and then.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any


class SparkTasks:
    """Polls `spark`'s status tracker every `every` seconds while the block runs."""

    def __init__(self, spark: Any, progress: Any, every: float = 0.5) -> None:
        self._tracker = spark.sparkContext.statusTracker()
        self._show = getattr(progress, "detail", None)
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="spark-progress", daemon=True)
        self.last = ""

    def __enter__(self) -> SparkTasks:
        if self._show is not None:
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * self._every)

    def text(self) -> str:
        """What Spark is doing now: its active stages' tasks done of tasks in all."""
        done = total = 0
        stages = []
        for stage_id in self._tracker.getActiveStageIds():
            info = self._tracker.getStageInfo(stage_id)
            if info is None:
                continue
            done += info.numCompletedTasks
            total += info.numTasks
            stages.append(str(stage_id))
        if not total:
            return ""
        return f"Spark stage {', '.join(stages)}: {done} of {total} tasks done"

    def _poll(self) -> None:
        while not self._stop.wait(self._every):
            try:
                now = self.text()
            except Exception:
                return
            if now and now != self.last and self._show is not None:
                self.last = now
                self._show(now)
