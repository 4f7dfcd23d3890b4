"""Kafka (and Event Hubs' Kafka endpoint) as a feed, with confluent-kafka.

The consumer joins its group and is handed partitions; on every assignment each partition
is placed at the position the tables give (`_system/batches`), never at the group's
committed offset, which is written after each batch for monitoring (lag) only. Messages of
partitions taken away by a rebalance are dropped by the loop; their new owner reads them
from the tables' position, and the intake drops whatever two owners both held.
"""

from __future__ import annotations

import logging
from typing import Any

from digital_finance.errors import TerminalError
from digital_finance.streaming.feed import Message, Positions
from digital_finance.streaming.kafka_config import KafkaConnection

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

    def poll(self, timeout: float, limit: int) -> list[Message]:
        # wait for the first message only, then take what the client has fetched already:
        # `consume` waits its whole timeout whenever fewer than `num_messages` are there
        got = self.consumer.consume(num_messages=1, timeout=timeout)
        while got and len(got) < limit:
            more = self.consumer.consume(num_messages=min(limit - len(got), 10_000), timeout=0)
            if not more:
                break
            got.extend(more)
        out: list[Message] = []
        names = self._names
        for msg in got:
            error = msg.error()
            where = (msg.topic(), msg.partition())
            name = names.get(where)
            if name is None:
                name = names[where] = f"{where[0]}/{where[1]}"
            if error is not None:
                if error.code() == self._kafka.KafkaError._PARTITION_EOF:
                    self._at_end.add(name)
                    continue
                if error.fatal():
                    raise TerminalError(f"Kafka: {error.str()}")
                log.warning("Kafka: %s", error.str())
                continue
            if name not in self._owned:
                continue  # a message fetched just before its partition was taken away
            self._at_end.discard(name)
            dataset = self.topics[str(where[0])]
            out.append(Message(dataset, name, int(msg.offset() or 0), msg.value() or b""))
        return out

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
