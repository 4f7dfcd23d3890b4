"""Kafka (and Event Hubs' Kafka endpoint) as a feed, with confluent-kafka.

The consumer joins its group and is handed partitions; on every assignment each partition
is placed at the position the tables give (`_system/batches`), never at the group's
committed offset, which is written after each batch for monitoring (lag) only. Messages of
partitions taken away by a rebalance are dropped by the loop; their new owner reads them
from the tables' position, and the intake drops whatever two owners both held.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from digital_finance.errors import TerminalError
from digital_finance.streaming.feed import Positions
from digital_finance.streaming.kafka_config import KafkaConnection

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


class KafkaMissingError(TerminalError):
    """confluent-kafka is not installed."""


class KafkaFeed:
    """A consumer of topics, each mapped to a dataset."""

    kind = "kafka"

    def __init__(self, connection: KafkaConnection, group: str, topics: dict[str, str]) -> None:
        try:
            import confluent_kafka
        except ImportError as exc:
            raise KafkaMissingError(
                "the Kafka source needs confluent-kafka: pip install 'digital-finance[kafka]'"
            ) from exc
        self._kafka = confluent_kafka
        self.topics = topics  # topic -> dataset
        conf: dict[str, Any] = {
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "client.id": "digital-finance",
            "error_cb": self._error,
            # librdkafka stops fetching a partition for this long whenever its queue is
            # full (default 1 s): a catch-up then read 160k messages/s with the CPU idle
            # two thirds of the time; 10 ms read 500k+ (`[stream.kafka] options` overrides)
            "fetch.queue.backoff.ms": 10,
        }
        conf.update(connection.librdkafka())
        # the next-generation group protocol (KIP-848, `group.protocol=consumer`, Kafka 4+)
        # and cooperative assignors hand partitions over one by one: incremental calls
        self._incremental = str(conf.get("group.protocol", "classic")) == "consumer" or (
            "cooperative" in str(conf.get("partition.assignment.strategy", ""))
        )
        self.consumer = confluent_kafka.Consumer(conf)
        self._positions: Positions | None = None
        self._owned: set[str] = set()
        self._revoked: set[str] = set()
        self._at_end: set[str] = set()
        self.errors: list[str] = []
        self._names: dict[tuple[Any, Any], str] = {}  # (topic, partition) -> `topic/3`

    # --- Feed ------------------------------------------------------------------------
    def start(self, positions: Positions) -> None:
        self._positions = positions
        self.consumer.subscribe(
            sorted(self.topics), on_assign=self._assign, on_revoke=self._revoke,
            on_lost=self._revoke,
        )  # fmt: skip

    def poll(self, timeout: float, limit: int) -> pa.Table:
        import pyarrow as pa

        # wait for the first message only, then take what the client has fetched already:
        # `consume` waits its whole timeout whenever fewer than `num_messages` are there
        got = self.consumer.consume(num_messages=1, timeout=timeout)
        polled, count = [self._records(got)], len(got)
        with _no_collections():
            while got and count < limit:
                got = self.consumer.consume(num_messages=min(limit - count, 10_000), timeout=0)
                count += len(got)
                # made a table at once: a million live messages (objects the garbage
                # collector tracks) made each of its full collections walk them all
                polled.append(self._records(got))
        return pa.concat_tables(polled) if len(polled) > 1 else polled[0]

    def _records(self, got: list[Any]) -> pa.Table:
        """The messages as a table: a list comprehension per column (an object or a loop
        iteration per message cost as much as reading it from the broker)."""
        import numpy as np

        from digital_finance.sources.stream_records import coded_records

        errors = [msg.error() for msg in got]
        keys = [(msg.topic(), msg.partition()) for msg in got]
        index: dict[tuple[Any, Any], int] = {}
        codes = np.array([index.setdefault(key, len(index)) for key in keys], dtype=np.int32)
        names = [self._name(key) for key in index]
        keep = np.ones(len(got), dtype=np.bool_)
        ended: dict[str, int] = {}  # partition -> where its end-of-partition event came
        if any(error is not None for error in errors):  # (a KafkaError cannot be == None)
            for at, error in enumerate(errors):
                if error is None:
                    continue
                keep[at] = False
                if error.code() == self._kafka.KafkaError._PARTITION_EOF:
                    ended[names[codes[at]]] = at
                elif error.fatal():
                    raise TerminalError(f"Kafka: {error.str()}")
                else:
                    log.warning("Kafka: %s", error.str())
        # a message fetched just before its partition was taken away is not ours to hold
        foreign = [code for code, name in enumerate(names) if name not in self._owned]
        if foreign:
            keep &= ~np.isin(codes, foreign)
        read = np.unique(codes[keep]).tolist()
        for code in read:
            self._at_end.discard(names[code])
        for name, at in ended.items():  # at its end unless a message came after the event
            code = names.index(name)
            if not (keep[at:] & (codes[at:] == code)).any():
                self._at_end.add(name)
        if not keep.all():
            got = [msg for msg, kept in zip(got, keep.tolist(), strict=True) if kept]
            codes = codes[keep]
        if codes.size and (codes[1:] < codes[:-1]).any():
            # one run per partition (of what one fetch gave), so that `Held` can put the
            # batch in partition order by stitching runs instead of moving every value
            order = np.argsort(codes, kind="stable")
            got, codes = [got[i] for i in order.tolist()], codes[order]
        values = [msg.value() for msg in got]
        if None in values:  # a tombstone: an empty record, dropped as a blank line is
            values = [b"" if value is None else value for value in values]
        # an error of no topic (a broker gone) has a name, and no message
        datasets = [self.topics.get(str(topic), "") for topic, _ in index]
        return coded_records(
            list(zip(datasets, names, strict=True)),
            codes,
            [msg.offset() for msg in got],
            values,
        )

    def _name(self, key: tuple[Any, Any]) -> str:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = f"{key[0]}/{key[1]}"
        return name

    def revoked(self) -> set[str]:
        gone, self._revoked = self._revoked, set()
        return gone

    def caught_up(self) -> bool:
        return bool(self._owned) and self._owned <= self._at_end

    def assigned(self) -> bool:
        return bool(self._owned)

    def done(self, ends: dict[str, int]) -> None:
        tps = []
        for name, end in ends.items():
            if name in self._owned:
                topic, partition = name.rsplit("/", 1)
                tps.append(self._kafka.TopicPartition(topic, int(partition), end))
        if tps:
            try:
                self.consumer.commit(offsets=tps, asynchronous=True)
            except self._kafka.KafkaException as exc:  # monitoring only: never fail a batch
                log.info("Kafka group offsets not committed (%s); the tables hold the truth", exc)

    def high_watermarks(self) -> dict[str, int] | None:
        ends = {}
        for name in self._owned:
            topic, partition = name.rsplit("/", 1)
            tp = self._kafka.TopicPartition(topic, int(partition))
            try:  # from the last fetch's statistics: no request to the broker
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except self._kafka.KafkaException:
                continue
            if high >= 0:
                ends[name] = high
        return ends

    def close(self) -> None:
        self.consumer.close()

    @property
    def owned(self) -> set[str]:
        """The partitions this consumer reads now."""
        return set(self._owned)

    # --- rebalance callbacks (called from inside `poll`) ---------------------------------
    def _assign(self, consumer: Any, partitions: list[Any]) -> None:
        reached = self._positions() if self._positions is not None else {}
        for tp in partitions:
            name = f"{tp.topic}/{tp.partition}"
            tp.offset = reached.get(name, self._kafka.OFFSET_BEGINNING)
            self._owned.add(name)
            self._at_end.discard(name)
            self._revoked.discard(name)
        shown = ", ".join(f"{tp.topic}/{tp.partition}@{tp.offset}" for tp in partitions)
        log.info("assigned %s", shown or "no partitions")
        if self._incremental:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def _revoke(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            name = f"{tp.topic}/{tp.partition}"
            self._owned.discard(name)
            self._at_end.discard(name)
            self._revoked.add(name)
        log.info("revoked %s", ", ".join(f"{tp.topic}/{tp.partition}" for tp in partitions))
        if self._incremental:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    def _error(self, error: Any) -> None:
        # the broker going away is reported here and retried by librdkafka itself
        self.errors.append(str(error))
        log.warning("Kafka: %s", error)


@contextlib.contextmanager
def _no_collections() -> Iterator[None]:
    """No garbage collection while messages are read: each is an object the collector
    tracks, so 10,000 of them set off 14 collections, some of them full ones that walk every
    object of the process (8 % of a stream's main thread at 20k events/s). Messages make no cycles:
    what they leave is freed by reference counting once the chunk is a table."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
