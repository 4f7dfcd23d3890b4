"""`stream --engine spark`: Structured Streaming reads Kafka; the Spark engine writes each batch.

Spark's Kafka source (also Azure Event Hubs' Kafka endpoint) hands every micro-batch to
`foreachBatch`, which gives its records to `Lakehouse.ingest_stream` on the Spark engine:
the same plan, spool, claim, table steps and app transactions as the embedded stream's
batches. So the two engines keep one set of positions, in the tables (`_system/batches`,
a part per Kafka partition), and either continues the other's lakehouse from there.

The tables are the truth, Spark's checkpoint only serves the query while it runs. At every
start the checkpoint (`_system/checkpoints/spark-kafka-<group>`) is begun afresh and the
query starts at the positions the tables hold (`startingOffsets`; a partition they do not
know from its earliest offset). A checkpoint kept across starts could stand behind the
tables (another engine went on; records would be read again and dropped) or ahead of them
(a batch abandoned; records would be skipped, which is loss). Starting from the tables is
right in both cases, and a checkpoint lost or deleted changes nothing. A batch that a
killed driver left claimed is finished from the spool before the query starts; records
Spark hands over again (the epoch it was in) are at positions a batch holds and are
dropped by the plan, so no record is in two batches.

Each micro-batch passes through the driver once, as Arrow (`DataFrame.toArrow`): planning
against the tables and the spool need its records in one place. `maxOffsetsPerTrigger`
(`--max-batch-records`) bounds that; staging and every table write are Spark's again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from digital_finance.errors import TerminalError, TransientError
from digital_finance.runs.report import RunReport
from digital_finance.sources.stream_records import records_table, schema
from digital_finance.streaming.kafka_config import KafkaConfigError, KafkaConnection

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from digital_finance.api import Lakehouse
    from digital_finance.streaming.loop import StreamOptions

log = logging.getLogger(__name__)

CHECKPOINTS = "_system/checkpoints"
EARLIEST = -2  # Spark's `startingOffsets` code for a partition's first offset
_PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
# librdkafka's own names for files and switches the Java client spells otherwise (keystores)
_LIBRDKAFKA_ONLY = {
    "ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "ssl.ca.pem",
    "ssl.certificate.pem", "ssl.key.pem", "enable.ssl.certificate.verification",
    "statistics.interval.ms", "queued.max.messages.kbytes", "enable.partition.eof",
    "fetch.queue.backoff.ms", "queued.min.messages",
}  # fmt: skip


def spark_kafka_options(conn: KafkaConnection) -> dict[str, str]:
    """The librdkafka settings as Spark's `kafka.*` source options (Java client names).

    The Event Hubs connection string goes into `kafka.sasl.jaas.config`, which the session
    redacts (`REDACTION`); Entra ID sign-in needs a Java callback, so it is refused here.
    """
    if conn.entra_scope is not None:
        raise KafkaConfigError(
            "[stream.kafka] entra_id signs in through azure-identity, which Spark's Java Kafka "
            "client cannot call; on Spark use the Event Hubs connection string (from a Key "
            "Vault-backed secret scope on Databricks) or run the embedded stream"
        )
    untranslated = sorted(
        {k for k in conn.settings if k in _LIBRDKAFKA_ONLY}
        | {k for k in conn.secrets if k != "sasl.password"}
    )
    if untranslated:
        raise KafkaConfigError(
            f"[stream.kafka] {', '.join(untranslated)}: librdkafka settings that Spark's Java "
            "Kafka client has no equivalent for here; drop them for --engine spark (a broker "
            "with a public certificate needs none), or run the embedded stream"
        )
    renamed = {"sasl.mechanisms": "sasl.mechanism"}
    dropped = {"sasl.username", "sasl.password", "log_level", "group.id"}
    options = {
        f"kafka.{renamed.get(k, k)}": v for k, v in conn.settings.items() if k not in dropped
    }
    if "sasl.password" in conn.secrets:
        user = conn.settings.get("sasl.username", "")
        secret = conn.secrets["sasl.password"].get_secret_value()
        mechanism = conn.settings.get("sasl.mechanisms", "PLAIN").upper()
        login = _SCRAM_LOGIN if mechanism.startswith("SCRAM") else _PLAIN_LOGIN
        # Databricks ships the Kafka client shaded under `kafkashaded.`
        module = ("kafkashaded." if "DATABRICKS_RUNTIME_VERSION" in os.environ else "") + login
        options["kafka.sasl.jaas.config"] = (
            f'{module} required username="{_escaped(user)}" password="{_escaped(secret)}";'
        )
    return options


# Spark redacts matching option names in plans and logs; its default misses the JAAS config
REDACTION = {"spark.sql.redaction.options.regex": "(?i)url|jaas|password|secret|token"}


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def starting_offsets(positions: dict[str, int], partitions: dict[str, int]) -> str:
    """Spark's `startingOffsets` JSON: each partition where the tables stand (`topic/3` ->
    the next offset), the earliest offset where they hold nothing of it. Spark wants every
    partition of the topics named once offsets are given."""
    if not any(p.rsplit("/", 1)[0] in partitions for p in positions):
        return "earliest"
    return json.dumps(
        {
            topic: {str(n): positions.get(f"{topic}/{n}", EARLIEST) for n in range(count)}
            for topic, count in sorted(partitions.items())
        },
        sort_keys=True,
    )


def topic_partitions(conn: KafkaConnection, topics: list[str]) -> dict[str, int]:
    """How many partitions each topic has, asked of the broker."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**conn.librdkafka(), "log_level": 0})
    try:
        listed = admin.list_topics(timeout=30)
    except KafkaException as exc:
        raise TransientError(
            f"the Kafka broker did not answer ({exc.args[0]}); is "
            f"{conn.settings.get('bootstrap.servers')} reachable? Run again when it is"
        ) from None
    counts = {}
    for topic in topics:
        found = listed.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise TerminalError(
                f"the topic {topic!r} does not exist on the broker; create it, or give "
                "--topic TOPIC=DATASET with an existing one"
            )
        counts[topic] = len(found.partitions)
    return counts


@dataclass
class SparkStreamTotals:
    """What a Spark stream did, for its last line."""

    batches: int = 0
    records: int = 0
    epochs: int = 0  # micro-batches Spark handed over (some hold only records already in)


class QueryDriver(ABC):
    """What a Spark stream does around its query, whatever its source: waits for it, stops
    it between batches, and raises a batch's failure as the error it was.

    A subclass sets `_lock` (held by a batch from its start to its last commit),
    `_stopping`, `_error`, `totals` and `on_batch`.
    """

    _lock: threading.Lock
    options: StreamOptions
    _stopping: bool
    _error: BaseException | None
    totals: SparkStreamTotals
    on_batch: Callable[[RunReport, int, float], None] | None

    @property
    @abstractmethod
    def checkpoint(self) -> str:
        """Where the query's checkpoint lives (under the lakehouse's `_system/`)."""

    def _start(self, rows: DataFrame, name: str, batch: Callable[[DataFrame, int], None]) -> Any:
        """The query: `rows` to `batch` per micro-batch, on the stream's trigger, with its
        checkpoint; `--once` is `availableNow`."""
        writer = (
            rows.writeStream.queryName(name)
            .option("checkpointLocation", self.checkpoint)
            .foreachBatch(batch)
        )
        if self.options.once:
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=f"{self.options.trigger_seconds} seconds")
        return writer.start()

    def _drive(
        self, query: Any, stop: Callable[[], bool], idle: Callable[[], None] = lambda: None
    ) -> None:
        """Until the query ends or `stop()`; `idle` runs between polls."""
        from pyspark.errors import StreamingQueryException

        try:
            while query.isActive:
                if stop() and not self._stopping:
                    with self._lock:  # the batch under way commits first
                        self._stopping = True
                    query.stop()
                    break
                query.awaitTermination(0.2)
                idle()
        except StreamingQueryException:
            pass  # the query died: `_raise_failure` says why, as the error it was
        except BaseException:
            # a second signal, or an error here: no new batch starts, and Spark interrupts
            # the query once the batch under way returns to it
            self._stopping = True
            query.stop()
            raise
        self._raise_failure(query)

    def _committed(self, report: RunReport, held: int, seconds: float) -> None:
        from digital_finance.streaming.loop import committed

        committed(self.totals, self.on_batch, report, held, seconds)

    def _raise_failure(self, query: Any) -> None:
        failure = query.exception()
        if failure is None:
            return
        if self._error is not None:
            raise self._error
        first = str(failure).strip().splitlines()[0] if str(failure).strip() else "no message"
        raise TransientError(f"the Spark stream stopped: {first}; start it again")


@dataclass
class SparkKafkaStream(QueryDriver):
    """One Structured Streaming query from Kafka topics into one lakehouse."""

    lake: Lakehouse
    spark: SparkSession
    conn: KafkaConnection
    topics: dict[str, str]  # topic -> dataset
    group: str
    options: StreamOptions
    on_batch: Callable[[RunReport, int, float], None] | None = None
    on_start: Callable[[str], None] | None = None  # told once the query runs
    totals: SparkStreamTotals = field(default_factory=SparkStreamTotals)
    kind: str = "kafka"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # held by a batch from its start to its last commit
        self._stopping = False
        self._error: BaseException | None = None

    @property
    def checkpoint(self) -> str:
        """Where the query's checkpoint lives: under the lakehouse's `_system/`."""
        return self.lake.root.child(f"{CHECKPOINTS}/spark-{self.kind}-{self.group}").uri

    def run(self, stop: Callable[[], bool]) -> SparkStreamTotals:
        """Micro-batches until `stop()` says so (or, with `once`, until caught up)."""
        # a batch a killed writer left is finished before any position is read
        self._committed(self.lake.ingest_stream(self.kind, records_table([])), 0, 0.0)
        partitions = topic_partitions(self.conn, sorted(self.topics))
        start = starting_offsets(self.lake.stream_positions(self.kind), partitions)
        log.info("Spark stream starts at %s", start)
        delete_folder(self.spark, self.checkpoint)
        query = self._query(start)
        if self.on_start is not None:
            where = "the earliest offsets" if start == "earliest" else "the tables' positions"
            shown = ", ".join(f"{t} ({n} partitions)" for t, n in sorted(partitions.items()))
            self.on_start(f"Spark stream started on {shown}, from {where}")
        self._drive(query, stop)
        return self.totals

    def _query(self, start: str) -> Any:
        from pyspark.sql import functions as F

        datasets = F.create_map(*[F.lit(x) for kv in sorted(self.topics.items()) for x in kv])
        source = self.spark.readStream.format("kafka")
        for key, value in spark_kafka_options(self.conn).items():
            source = source.option(key, value)
        records = (
            source.option("subscribe", ",".join(sorted(self.topics)))
            .option("startingOffsets", start)
            .option("maxOffsetsPerTrigger", str(self.options.max_batch_records))
            .load()
            .select(
                F.element_at(datasets, F.col("topic")).alias("dataset"),
                F.concat_ws("/", "topic", F.col("partition").cast("string")).alias("partition"),
                F.col("offset").alias("position"),
                "value",
            )
        )
        return self._start(records, f"digital-finance-{self.kind}-{self.group}", self._batch)

    def _batch(self, frame: DataFrame, epoch: int) -> None:
        """One micro-batch: its records into the lakehouse, as one batch of the pipeline."""
        with self._lock:
            if self._stopping:
                return  # not taken: the next start reads it from where the tables stand
            self.totals.epochs += 1
            clock = time.monotonic()
            held = frame.toArrow()
            if held.num_rows == 0:
                return
            table = held.select(schema().names).cast(schema())
            try:
                report = self.lake.ingest_stream(self.kind, table)
            except BaseException as exc:
                self._error = exc  # Spark wraps it; the stream raises it as it was
                raise
            self._committed(report, table.num_rows, time.monotonic() - clock)


def delete_folder(spark: SparkSession, uri: str) -> None:
    """Remove a folder on any file system Spark writes (local, `abfss://`, DBFS)."""
    files, path = hadoop_path(spark, uri)
    files.delete(path, True)


def hadoop_path(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    """Hadoop's file system for `uri` and its path there, as the session reaches them."""
    jvm = spark._jvm  # Hadoop's FileSystem is reached through the JVM
    if jvm is None:
        raise TerminalError("the Spark stream needs a classic Spark session (not Spark Connect)")
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark._jsc.hadoopConfiguration()), path
