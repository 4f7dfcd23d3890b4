"""The Spark engine's progress is Spark's own task counts, read while a job runs."""

from __future__ import annotations

import threading
import time
from typing import Any

from digital_finance.engines.spark.progress import SparkTasks
from tests.spark.conftest import QuietProgress


class Recorder(QuietProgress):
    """Progress that keeps the details it was told."""

    def __init__(self) -> None:
        self.details: list[str] = []

    def detail(self, text: str) -> None:
        self.details.append(text)


def _slow(x: int) -> int:
    time.sleep(0.4)
    return x


def test_task_counts_are_shown_while_a_job_runs(spark: Any) -> None:
    seen = Recorder()
    job = threading.Thread(
        target=lambda: spark.sparkContext.parallelize(range(8), 8).map(_slow).count()
    )
    with SparkTasks(spark, seen, every=0.1):
        job.start()
        job.join()
    assert seen.details, "no progress while an 8-task job ran"
    assert all(" of 8 tasks done" in d and d.startswith("Spark stage ") for d in seen.details)
    done = [int(d.split(": ")[1].split(" of ")[0]) for d in seen.details]
    assert done == sorted(done)  # counts only go forward


def test_a_progress_without_detail_is_left_alone(spark: Any) -> None:
    class Plain:
        def stage(self, message: str) -> None:
            pass

    with SparkTasks(spark, Plain(), every=0.05) as tasks:
        spark.range(10).count()
    assert tasks.last == ""
