"""`digital-finance stream`: micro-batches from Kafka, MQTT or a landing folder until stopped.

The first SIGTERM or Ctrl-C lets the batch under way commit, then the command exits 0; a
second one stops at once (exit 130/143), which is safe too: the next start finishes the
batch from the spool.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from digital_finance.api import Lakehouse
from digital_finance.cli.console import err_console, fail
from digital_finance.cli.interrupts import Interrupted
from digital_finance.config import ConfigError, RunConfig, load_config
from digital_finance.errors import TerminalError, TransientError
from digital_finance.lakehouse.storage import StorageError, location
from digital_finance.runs.report import RunReport

if TYPE_CHECKING:
    from digital_finance.lakehouse.maintenance import MaintenanceReport

DATASETS = ("stocks", "mutual_funds")
EXIT_TRY_AGAIN = 75


@dataclass(frozen=True)
class StreamRequest:
    """What the command line asked for."""

    source: str
    output: str
    config: Path | None
    trigger: float | None
    max_batch_records: int | None
    once: bool
    topics: list[str]
    bootstrap_servers: str | None
    group: str | None
    broker: str | None
    path: str | None  # a folder or a container URI
    source_tz: str | None
    metrics_port: int | None = None
    engine: str = "embedded"
    master: str | None = None  # Spark's, with engine spark
    spark_conf: dict[str, str] = field(default_factory=dict)


def parse_topics(items: list[str], defaults: dict[str, str]) -> dict[str, str]:
    """`--topic NAME[=DATASET]` (repeatable) as topic -> dataset; a bare name is a dataset."""
    if not items:
        return dict(defaults) or {d: d for d in DATASETS}
    topics: dict[str, str] = {}
    for item in items:
        name, sep, dataset = item.partition("=")
        dataset = dataset if sep else name
        if dataset not in DATASETS:
            fail(
                f"--topic {item}: the dataset must be one of {', '.join(DATASETS)}; "
                "write --topic TOPIC=DATASET when the topic has another name"
            )
        topics[name] = dataset
    return topics


def stream(request: StreamRequest) -> int:
    """Run the stream; returns the exit code."""
    from digital_finance.logs import configure_from_environment

    configure_from_environment()
    try:
        config = load_config(request.config, request.source_tz)
        where = location(request.output, config.plain_storage_options())
        settings = _stream_settings(config)
    except (ConfigError, StorageError, ValueError) as exc:
        fail(str(exc))
    from digital_finance.streaming.loop import StreamOptions

    trigger = request.trigger if request.trigger is not None else settings.trigger_seconds
    options = StreamOptions(
        trigger_seconds=trigger,
        max_batch_records=(
            request.max_batch_records
            if request.max_batch_records is not None
            else settings.max_batch_records
        ),
        once=request.once,
        settle_seconds=settings.folder_settle_seconds,
        maintain_every_seconds=settings.maintain_every_seconds,
    )
    if options.trigger_seconds < 0:
        fail("--trigger must be 0 or more seconds")
    if options.max_batch_records < 1:
        fail("--max-batch-records must be 1 or more")
    if request.engine == "spark":
        return _spark_stream(request, where, config, settings, options)
    lake = Lakehouse(where, config)
    printer = BatchPrinter()
    with _stop_requests() as stop:
        try:
            if request.source == "folder":
                totals = _folder(lake, request, options, stop, printer)
            else:
                kind, open_feed = _feed(request, settings, config)
                port = request.metrics_port
                totals = _feed_loop(lake, kind, open_feed, options, stop, printer, port)
        except TerminalError as exc:
            fail(str(exc))
        except TransientError as exc:
            fail(str(exc), code=EXIT_TRY_AGAIN)
        except Interrupted as now:
            claimed = lake.claimed_batch
            after = f"; batch {claimed} is claimed: the next start finishes it" if claimed else ""
            err_console.print(f"stopped at once{after}", markup=False)
            return now.code
    how = "stopped" if stop() else "caught up"
    err_console.print(
        f"{how}: {totals[0]:,} batch(es), {totals[1]:,} records → {request.output}",
        markup=False,
    )
    return 0


def _spark_stream(
    request: StreamRequest, where: Any, config: RunConfig, settings: Any, options: Any
) -> int:
    """Structured Streaming through the Spark engine: from Kafka (`engines.spark.stream`)
    or a landing folder (`engines.spark.folder_stream`)."""
    if request.source not in ("kafka", "folder"):
        fail(
            f"--engine spark streams from Kafka (and Event Hubs) or a landing folder; for "
            f"--source {request.source} use the embedded engine, which writes the same tables"
        )
    if request.metrics_port is not None:
        fail("--metrics-port is the embedded stream's; Spark reports its own progress")
    kafka = request.source == "kafka"
    if not kafka and request.path is None:
        fail("--source folder needs --path DIR (with DIR/stocks/ and DIR/mutual_funds/)")
    try:
        if kafka:
            import confluent_kafka  # noqa: F401 - the driver lists the partitions with it

        from digital_finance.engines.spark.folder_stream import SparkFolderStream
        from digital_finance.engines.spark.jars import SparkSetupError
        from digital_finance.engines.spark.session import engine_session
        from digital_finance.engines.spark.stream import REDACTION, SparkKafkaStream
    except ImportError as exc:
        extras = "spark,kafka" if kafka else "spark"
        fail(
            f"the Spark engine needs PySpark and Delta Spark ({exc}); install them with "
            f"pip install 'digital-finance[{extras}]' (or `make setup` in the repository)"
        )
    if kafka:
        conn, group, topics = _kafka_connection(request, settings, config)
    printer = BatchPrinter()
    err_console.print("starting Spark", markup=False)
    try:
        spark, owned = engine_session(
            request.master, {**REDACTION, **request.spark_conf}, kafka=kafka
        )
    except SparkSetupError as exc:
        fail(str(exc))
    try:
        lake = Lakehouse(where, config, engine="spark", spark=spark)
        query: SparkKafkaStream | SparkFolderStream
        if kafka:
            query = SparkKafkaStream(
                lake, spark, conn, topics, group, options, printer.batch, printer.note
            )
        else:
            assert request.path is not None
            query = SparkFolderStream(
                lake, spark, request.path.rstrip("/"), options, printer.batch, printer.note
            )
        with _stop_requests() as stop:
            try:
                totals = query.run(stop)
            except TerminalError as exc:
                fail(str(exc))
            except TransientError as exc:
                fail(str(exc), code=EXIT_TRY_AGAIN)
            except Interrupted as now:
                # a Python foreachBatch cannot be interrupted: Spark let the batch under way end
                err_console.print("stopped after the batch under way ended", markup=False)
                return now.code
            how = "stopped" if stop() else "caught up"
    finally:
        if owned:
            spark.stop()
    err_console.print(
        f"{how}: {totals.batches:,} batch(es), {totals.records:,} records → {request.output}",
        markup=False,
    )
    return 0


def _stream_settings(config: RunConfig) -> Any:
    if config.settings is not None:
        return config.settings.stream
    from digital_finance.settings import StreamSettings

    return StreamSettings()


def _kafka_connection(
    request: StreamRequest, stream_settings: Any, config: RunConfig
) -> tuple[Any, str, dict[str, str]]:
    """The Kafka connection, the group and the topics (topic -> dataset) asked for."""
    from digital_finance.settings import resolved
    from digital_finance.streaming.kafka_config import KafkaConfigError, connection

    kafka = stream_settings.kafka
    topics = parse_topics(request.topics, kafka.topics)
    settings = config.settings
    try:
        options = {k: resolved(v, settings) for k, v in kafka.options.items()}
        conn = connection(
            request.bootstrap_servers or kafka.bootstrap_servers,
            options,
            resolved(kafka.event_hubs_connection_string, settings)
            if kafka.event_hubs_connection_string is not None
            else None,
            kafka.entra_id,
        )
    except KafkaConfigError as exc:
        fail(str(exc))
    return conn, request.group or kafka.group, topics


def _feed(request: StreamRequest, stream_settings: Any, config: RunConfig) -> tuple[str, Any]:
    if request.source == "kafka":
        from digital_finance.streaming.kafka_feed import KafkaFeed

        conn, group, topics = _kafka_connection(request, stream_settings, config)
        return "kafka", lambda lake: KafkaFeed(conn, group, topics)
    if request.source == "mqtt":
        return _mqtt_feed(request, stream_settings, config)
    fail(f"--source must be kafka, mqtt or folder, not {request.source!r}")


MQTT_TOPICS = {"stocks/#": "stocks", "mutual_funds/#": "mutual_funds"}


def _mqtt_feed(request: StreamRequest, stream_settings: Any, config: RunConfig) -> tuple[str, Any]:
    from digital_finance.settings import resolved
    from digital_finance.streaming.mqtt_feed import MqttConnection, MqttFeed, Seen, fingerprint

    mqtt = stream_settings.mqtt
    broker = request.broker or mqtt.broker
    if not broker:
        fail("no MQTT broker: give --broker HOST:PORT, or [stream.mqtt] broker")
    host, _, port = broker.rpartition(":")
    if not host or not port.isdigit():
        fail(f"--broker takes HOST:PORT (e.g. 127.0.0.1:1883), not {broker!r}")
    topics = parse_topics(request.topics, mqtt.topics or MQTT_TOPICS)
    client_id = request.group or mqtt.client_id
    window = mqtt.redelivery_window
    password = resolved(mqtt.password, config.settings) if mqtt.password is not None else None
    connection = MqttConnection(
        host, int(port), client_id, topics, mqtt.username, password, mqtt.tls,
        str(mqtt.ca_file) if mqtt.ca_file else None,
    )  # fmt: skip

    def open_feed(lake: Lakehouse) -> Any:
        # what bronze holds of this consumer's last batches: a broker may deliver it again
        recent = lake.recent_stream_records("mqtt", f"{client_id}:", window)
        seen = Seen([fingerprint(p, text) for p, text in recent], capacity=window)
        return MqttFeed(connection, seen, config.input_limits)

    return "mqtt", open_feed


def _feed_loop(
    lake: Lakehouse,
    kind: str,
    open_feed: Any,
    options: Any,
    stop: Callable[[], bool],
    printer: BatchPrinter,
    port: int | None,
) -> tuple[int, int]:
    from digital_finance.streaming.loop import StreamLoop

    metrics = None
    if port is not None:
        from digital_finance.streaming.metrics import StreamMetrics

        metrics = StreamMetrics()
        try:
            metrics.serve(port)
        except OSError as exc:
            fail(f"--metrics-port {port}: {exc.strerror}; choose another port")
        err_console.print(f"metrics on http://127.0.0.1:{port}/metrics", markup=False)
    loop = StreamLoop(
        lake, kind, open_feed, options, printer.batch, metrics, on_maintained=printer.maintained
    )
    totals = loop.run(stop)
    return totals.batches, totals.records


def _folder(
    lake: Lakehouse,
    request: StreamRequest,
    options: Any,
    stop: Callable[[], bool],
    printer: BatchPrinter,
) -> tuple[int, int]:
    """The landing folder: `DIR/stocks/` and `DIR/mutual_funds/`, listed every trigger."""
    if request.path is None:
        fail("--source folder needs --path DIR (with DIR/stocks/ and DIR/mutual_funds/)")
    from digital_finance.sources.input_store import InputStore, is_uri

    root = request.path.rstrip("/")
    store = InputStore(lake.root.options)  # a container is reached as the lakehouse is
    if not is_uri(root) and not Path(root).is_dir():
        fail(f"--path {root} is not a folder")
    from digital_finance.streaming.upkeep import Upkeep

    upkeep = Upkeep(lake, options.maintain_every_seconds, printer.maintained)
    if not options.once:  # a `--once` run from cron is kept by `maintain` instead
        upkeep.start()
    try:
        batches, records = _watch_folder(lake, store, root, options, stop, printer)
    finally:
        upkeep.close()
    return batches, records


def _watch_folder(
    lake: Lakehouse,
    store: Any,
    root: str,
    options: Any,
    stop: Callable[[], bool],
    printer: BatchPrinter,
) -> tuple[int, int]:
    """Ingest what has settled in the folder every trigger, until stopped (or once)."""
    batches = records = 0
    while not stop():
        clock = time.monotonic()
        found = {d: _settled(store, f"{root}/{d}", options.settle_seconds) for d in DATASETS}
        if any(found.values()):
            report = lake.ingest(found)
            printer.batch(report, 0, time.monotonic() - clock)
            batches += len(report.batches)
            records += sum(sum(b.records.values()) for b in report.batches)
        if options.once:
            break
        pause = options.trigger_seconds - (time.monotonic() - clock)
        deadline = time.monotonic() + max(0.0, pause)
        while not stop() and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    return batches, records


def _settled(store: Any, folder: str, settle_seconds: float) -> list[Any]:
    """The input files under `folder` not modified for `settle_seconds`: a file written in
    place (not renamed into place) is left until its writer is done with it. In a container
    a blob appears only once its upload is committed; the same rule covers append blobs."""
    from digital_finance.sources.discovery import InputError, InputFile, is_input
    from digital_finance.sources.input_store import is_uri

    newest = time.time_ns() - int(settle_seconds * 1e9)
    if is_uri(folder):
        # a store gives the time to the second (its sub-second digits hold the ETag's hash,
        # `sources.input_store`): the second it started is compared, so `--once` with no
        # settle time takes every object listed, and a settle time is kept to the second
        second = 1_000_000_000
        return sorted(f for f in store.below(folder) if f.modified_ns // second * second <= newest)
    if not Path(folder).is_dir():
        return []
    found = []
    for path in sorted(Path(folder).rglob("*")):
        if is_input(path) and path.is_file():
            try:
                f = InputFile.readable(path)
            except (OSError, InputError):
                continue  # gone, or not a regular file: the next trigger looks again
            if f.modified_ns <= newest:
                found.append(f)
    return found


class BatchPrinter:
    """One line per committed batch on stderr, with what it wrote and how long it took."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def batch(self, report: RunReport, held: int, seconds: float) -> None:
        for note in report.notes:
            self._line(note)
        for b in report.batches:
            read = ", ".join(f"{k} {v:,}" for k, v in b.records.items() if v)
            wrote = ", ".join(
                f"{t} {n:,}" for t, n in b.written.items() if n and not t.startswith("_")
            )
            how = " (finished after an interruption)" if b.resumed else ""
            self._line(
                f"batch {b.batch_id}{how}: {read or 'no records'} in {b.seconds:.2f} s; "
                f"wrote {wrote or 'nothing'}"
            )
            for warning in b.warnings:
                self._line(f"warning: {warning}")
        if held and not report.batches:
            self._line(f"{held:,} record(s) were already in the tables (another writer's)")

    def note(self, text: str) -> None:
        """A line about the stream itself (its start)."""
        self._line(text)

    def maintained(self, report: MaintenanceReport) -> None:
        compacted = [
            f"{t.table} {t.files_before}→{t.files_after}" for t in report.tables if t.compacted
        ]
        checkpoints = sum(1 for t in report.tables if t.checkpointed)
        self._line(
            f"maintenance in {report.seconds:.2f} s: "
            f"{'compacted ' + ', '.join(compacted) if compacted else 'nothing to compact'}; "
            f"{checkpoints} checkpoint(s)"
        )

    def _line(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        err_console.print(
            f"[{elapsed:7.1f}s] {text}", markup=False, highlight=False, soft_wrap=True
        )
        err_console.file.flush()  # a log file sees each batch as it is committed


@contextmanager
def _stop_requests() -> Iterator[Callable[[], bool]]:
    """SIGINT/SIGTERM: the first asks the loop to stop after its batch; the second stops now."""
    asked: list[int] = []

    def handler(number: int, frame: FrameType | None) -> None:
        if asked:
            raise Interrupted(number)
        asked.append(number)
        err_console.print(
            "stopping after the batch under way (again to stop at once; the next start "
            "finishes it)",
            markup=False,
        )

    previous = {n: signal.signal(n, handler) for n in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(asked)
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
