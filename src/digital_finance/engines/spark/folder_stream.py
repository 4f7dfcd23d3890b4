"""`stream --engine spark --source folder`: Structured Streaming finds a landing folder's
files; the Spark engine ingests them, as `run` would.

The query watches `DIR/stocks/` and `DIR/mutual_funds/` with Spark's file source (Databricks
Auto Loader, `cloudFiles`, when it runs on Databricks), reading only the files' names,
sizes and times (`binaryFile` without its content column). Each micro-batch hands those
files to `Lakehouse.ingest` on the Spark engine: the batch pipeline's own plan, which knows
files by content and position. So a file already in the tables is never ingested twice, a
file that grew contributes only its new lines, and an embedded `stream --source folder` or
a `run` over the same folder continues where this one stopped, and the other way round.

As for Kafka, the tables are the truth and the checkpoint only serves the query while it
runs: it is begun afresh at every start (under `_system/checkpoints/`), so a start lists
every file again and the plan drops those already in. A file still being written (modified
within `[stream] folder_settle_seconds`) is held back and taken once it settles, between
micro-batches; with `--once`, it is left for the next start, as the embedded stream does.
The file source offers a path once per run, so lines appended to a file after it was
taken reach the tables at the next start (write files whole and rename them into place).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from digital_finance.contract.schemas import DATASETS
from digital_finance.engines.spark.stream import (
    CHECKPOINTS,
    QueryDriver,
    SparkStreamTotals,
    delete_folder,
    hadoop_path,
)
from digital_finance.errors import TerminalError
from digital_finance.runs.report import RunReport
from digital_finance.sources.discovery import InputError, InputFile, is_input_name
from digital_finance.sources.input_store import InputStore, is_uri

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from digital_finance.api import Lakehouse
    from digital_finance.streaming.loop import StreamOptions


def on_databricks() -> bool:
    """Whether this driver runs on a Databricks cluster (which has Auto Loader)."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


@dataclass
class SparkFolderStream(QueryDriver):
    """One Structured Streaming query over a landing folder into one lakehouse."""

    lake: Lakehouse
    spark: SparkSession
    root: str  # the landing folder: a local path or a storage URI
    options: StreamOptions
    on_batch: Callable[[RunReport, int, float], None] | None = None
    on_start: Callable[[str], None] | None = None
    totals: SparkStreamTotals = field(default_factory=SparkStreamTotals)
    auto_loader: bool = field(default_factory=on_databricks)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = False
        self._error: BaseException | None = None
        self._held: dict[str, dict[str, InputFile]] = {d: {} for d in DATASETS}
        self._store = InputStore(self.lake.root.options)  # a container, reached as the lake is

    @property
    def checkpoint(self) -> str:
        """The query's checkpoint, under `_system/`, one per landing folder."""
        name = hashlib.sha256(self.root.encode()).hexdigest()[:12]
        return self.lake.root.child(f"{CHECKPOINTS}/spark-folder-{name}").uri

    def run(self, stop: Callable[[], bool]) -> SparkStreamTotals:
        """Micro-batches until `stop()` says so (or, with `once`, until caught up)."""
        watched = [d for d in DATASETS if self._exists(f"{self.root}/{d}")]
        if not watched:
            raise TerminalError(
                f"{self.root} has neither stocks/ nor mutual_funds/: the landing folder keeps "
                "each dataset's files in a subfolder of that name"
            )
        delete_folder(self.spark, self.checkpoint)
        query = self._query(watched)
        if self.on_start is not None:
            how = "Auto Loader" if self.auto_loader else "the file source"
            self.on_start(f"Spark stream started on {self.root} ({', '.join(watched)}) with {how}")
        self._drive(query, stop, idle=self._take_settled)
        return self.totals

    def _exists(self, folder: str) -> bool:
        files, path = hadoop_path(self.spark, _spark_path(folder))
        return bool(files.exists(path))

    def _query(self, watched: list[str]) -> Any:
        from pyspark.sql import functions as F

        frames = []
        for dataset in watched:
            if self.auto_loader:
                source = (
                    self.spark.readStream.format("cloudFiles")
                    .option("cloudFiles.format", "binaryFile")
                    .option("cloudFiles.includeExistingFiles", "true")
                )
            else:
                # a streaming file source needs its schema given; binaryFile's is fixed
                source = self.spark.readStream.format("binaryFile").schema(_BINARY_FILE)
            files = (
                source.option("recursiveFileLookup", "true")
                .load(_spark_path(f"{self.root}/{dataset}"))
                # the content column is never selected, so no file is read here
                .select(F.lit(dataset).alias("dataset"), "path", "length", "modificationTime")
            )
            frames.append(files)
        found = frames[0]
        for more in frames[1:]:
            found = found.unionByName(more)
        return self._start(found, f"digital-finance-folder-{self.checkpoint[-12:]}", self._batch)

    def _batch(self, frame: DataFrame, epoch: int) -> None:
        """One micro-batch: the files Spark found, held until settled, then ingested."""
        rows = frame.select("dataset", "path").collect()
        with self._lock:
            if self._stopping:
                return  # not taken: the next start lists them again
            self.totals.epochs += 1
            for row in rows:
                local = _local_path(row["path"])
                if not is_input_name(local):
                    continue  # `_SUCCESS`, hidden files, other suffixes: not inputs
                found = self._fingerprint(local)
                if found is not None:
                    self._held[row["dataset"]][found.path] = found
            self._ingest_settled()

    def _take_settled(self) -> None:
        """Between micro-batches: files held back that have settled since."""
        if self.options.once or not any(self._held.values()):
            return
        with self._lock:
            if not self._stopping:
                self._ingest_settled()

    def _ingest_settled(self) -> None:
        newest = int((self.clock() - self.options.settle_seconds) * 1e9)
        taken: dict[str, list[InputFile]] = {}
        for dataset, held in self._held.items():
            for path in list(held):
                current = self._fingerprint(path)
                if current is None:
                    del held[path]  # gone before it settled: nothing to take
                elif current.modified_ns <= newest:
                    taken.setdefault(dataset, []).append(current)
                    del held[path]
                else:
                    held[path] = current
        if not taken:
            return
        clock = time.monotonic()
        try:
            report = self.lake.ingest({d: sorted(files) for d, files in taken.items()})
        except BaseException as exc:
            self._error = exc  # Spark wraps it; the stream raises it as it was
            raise
        self._committed(report, 0, time.monotonic() - clock)

    def _fingerprint(self, path: str) -> InputFile | None:
        if is_uri(path):
            try:
                return self._store.stat(path)
            except (OSError, InputError):
                return None
        from pathlib import Path

        try:
            return InputFile.readable(Path(path))
        except InputError:
            return None


_BINARY_FILE = "path STRING, modificationTime TIMESTAMP, length BIGINT, content BINARY"


def _spark_path(path: str) -> str:
    """A local folder as Spark names it (`file:` URI); a storage URI as it is."""
    if "://" in path or path.startswith(("file:", "dbfs:")):
        return path  # already a URI Spark reads (`file:` and `dbfs:` ones included)
    from pathlib import Path

    return Path(path).resolve().as_uri()


def _local_path(spark_path: str) -> str:
    """Spark's name of a file as the pipeline's: `file:` URIs become local paths."""
    from urllib.parse import unquote, urlparse

    if spark_path.startswith("file:"):
        return unquote(urlparse(spark_path).path)
    return spark_path
