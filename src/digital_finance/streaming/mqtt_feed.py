"""MQTT (Mosquitto, HiveMQ, Azure Event Grid's MQTT broker, IoT Hub) as a feed, with paho-mqtt.

An MQTT broker does not replay: a QoS 1 message it has handed over is gone once the client
acknowledges it. So the consumer acknowledges a message only after the batch holding it is
committed (`manual_ack`), on a persistent session (`clean_session=False`, a fixed client
id): whatever it held when it died is delivered again when it comes back. Positions are the
consumer's own: each topic it receives is a partition, `<client id>:<topic>` (so the device
id of `devices/{deviceId}/messages/events/` is in the lineage), numbered on from where the
tables say the partition stands.

What a broker delivers again is flagged as a duplicate (DUP): the messages of a batch
committed whose acknowledgements were not on the wire when the process died, and, after a
reconnect, whatever was delivered on the old connection and not yet acknowledged. A DUP
message is matched by topic and text: against a message held and not yet committed (which
then takes the new delivery's packet id, the one to acknowledge on this connection), else
against what the last batches committed (`Seen`: on start, what bronze holds of this
consumer's last batches) — then it is acknowledged and not ingested again. Packet ids of
an older connection are never acknowledged on a new one.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from digital_finance.errors import TerminalError, TransientError
from digital_finance.sources.input_limits import InputLimits
from digital_finance.sources.stream_records import records_table, stored_text
from digital_finance.streaming.feed import Positions

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

IDLE_SECONDS = 1.0  # with `--once`: caught up when nothing arrived for this long


class MqttMissingError(TerminalError):
    """paho-mqtt is not installed."""


@dataclass(frozen=True)
class MqttConnection:
    """How to reach the broker."""

    host: str
    port: int
    client_id: str
    topics: dict[str, str]  # topic filter -> dataset
    username: str | None = None
    password: Any = None  # SecretStr
    tls: bool = False
    ca_file: str | None = None


@dataclass
class _Received:
    topic: str
    value: bytes
    mid: int
    dup: bool
    generation: int


def fingerprint(partition: str, text: str) -> str:
    """What identifies a message delivered again: its partition and its text."""
    return hashlib.sha256(f"{partition}\n{text}".encode("utf-8", "surrogatepass")).hexdigest()


class Seen:
    """Fingerprints of committed messages, counted, the most recent `capacity` of them.

    A committed message may be delivered again on every new connection until its
    acknowledgement reaches the broker, so each connection may skip, per fingerprint, as
    many deliveries as were committed (`new_connection` starts the count again). Two
    identical messages on one topic are told apart by that count only: when the first was
    acknowledged and the second's delivery was cut off by a crash, the second is taken for
    the first delivered again (docs/STREAMING.md, "MQTT").
    """

    def __init__(self, fingerprints: list[str] | None = None, capacity: int = 500_000) -> None:
        self.counts: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.order: deque[str] = deque()
        self.capacity = capacity
        for fp in fingerprints or []:
            self.add(fp)

    def add(self, fp: str) -> None:
        """One more committed message with this fingerprint."""
        self.counts[fp] = self.counts.get(fp, 0) + 1
        self.order.append(fp)
        while len(self.order) > self.capacity:
            old = self.order.popleft()
            left = self.counts[old] - 1
            if left:
                self.counts[old] = left
            else:
                del self.counts[old]

    def take(self, fp: str) -> bool:
        """Whether a delivery with this fingerprint is a committed message delivered again."""
        if self.skipped.get(fp, 0) >= self.counts.get(fp, 0):
            return False
        self.skipped[fp] = self.skipped.get(fp, 0) + 1
        return True

    def new_connection(self) -> None:
        """Acknowledgements not yet on the wire are lost with a connection: start again."""
        self.skipped.clear()


@dataclass
class _Pending:
    """A message handed out and not yet acknowledged."""

    partition: str
    position: int
    fingerprint: str
    mid: int
    generation: int  # the connection it came on: its packet id means nothing on another


class MqttFeed:
    """A persistent-session subscriber to topic filters, each mapped to a dataset."""

    kind = "mqtt"

    def __init__(
        self,
        connection: MqttConnection,
        seen: Seen | None = None,
        limits: InputLimits | None = None,
    ) -> None:
        try:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError as exc:
            raise MqttMissingError(
                "the MQTT source needs paho-mqtt: pip install 'digital-finance[mqtt]'"
            ) from exc
        self._mqtt = mqtt
        self.connection = connection
        self.seen = seen or Seen()  # this consumer's committed messages (bronze on start)
        self.limits = limits or InputLimits()
        self._inbox: queue.Queue[_Received] = queue.Queue()
        self._next: dict[str, int] = {}
        self._pending: list[_Pending] = []
        self._generation = 0
        self._subscribed = threading.Event()
        self._last_message = time.monotonic()
        self.skipped_again = 0  # DUP deliveries of records bronze already held
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=connection.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if connection.username is not None:
            password = connection.password.get_secret_value() if connection.password else None
            client.username_pw_set(connection.username, password)
        if connection.tls:
            client.tls_set(ca_certs=connection.ca_file)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        self.client = client

    # --- Feed ------------------------------------------------------------------------
    def start(self, positions: Positions) -> None:
        prefix = f"{self.connection.client_id}:"
        self._next = {p: n for p, n in positions().items() if p.startswith(prefix)}
        try:
            self.client.connect(self.connection.host, self.connection.port, keepalive=30)
        except OSError as exc:
            raise TransientError(
                f"cannot reach the MQTT broker at {self.connection.host}:{self.connection.port}"
                f" ({exc}); is it running?"
            ) from exc
        self.client.loop_start()

    def poll(self, timeout: float, limit: int) -> pa.Table:
        out: list[tuple[str, str, int, bytes]] = []
        try:
            first = self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return records_table(out)
        batch = [first]
        while len(batch) < limit:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        for got in batch:
            partition = f"{self.connection.client_id}:{got.topic}"
            fp = fingerprint(partition, stored_text(got.value, self.limits))
            if got.dup and self._delivered_before(got, fp):
                self.skipped_again += 1
                continue
            dataset = self._dataset(got.topic)
            if dataset is None:
                log.warning("MQTT: %s matches no configured topic filter; ignored", got.topic)
                self._ack(got.mid, got.generation)
                continue
            position = self._next.get(partition, 0)
            self._next[partition] = position + 1
            self._pending.append(_Pending(partition, position, fp, got.mid, got.generation))
            out.append((dataset, partition, position, got.value))
        return records_table(out)

    def _delivered_before(self, got: _Received, fp: str) -> bool:
        """A DUP delivery of a message held (it takes the new packet id) or committed."""
        for held in self._pending:
            if held.fingerprint == fp and held.generation < got.generation:
                held.mid, held.generation = got.mid, got.generation
                return True
        if self.seen.take(fp):
            self._ack(got.mid, got.generation)
            return True
        return False

    def _ack(self, mid: int, generation: int) -> None:
        if generation == self._generation:
            self.client.ack(mid, 1)

    def revoked(self) -> set[str]:
        return set()  # no rebalancing: a session belongs to its client id

    def caught_up(self) -> bool:
        idle = time.monotonic() - self._last_message >= IDLE_SECONDS
        return self._subscribed.is_set() and self._inbox.empty() and idle

    def assigned(self) -> bool:
        return self._subscribed.is_set()

    def done(self, ends: dict[str, int]) -> None:
        kept = []
        for held in self._pending:
            if held.position < ends.get(held.partition, 0):
                # acknowledged on the connection it came on; from an older one, the broker
                # delivers it again (DUP) and `seen` acknowledges it then
                self.seen.add(held.fingerprint)
                if held.generation == self._generation:
                    self.client.ack(held.mid, 1)
            else:
                kept.append(held)
        self._pending = kept

    def high_watermarks(self) -> dict[str, int] | None:
        return None  # a broker that does not replay has no end to measure lag against

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    # --- callbacks (paho's network thread) -----------------------------------------------
    def _dataset(self, topic: str) -> str | None:
        for pattern, dataset in self.connection.topics.items():
            if self._mqtt.topic_matches_sub(pattern, topic):
                return dataset
        return None

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT: connection refused: %s", reason)
            return
        self._generation += 1
        self.seen.new_connection()
        log.info("MQTT: connected (session present: %s)", flags.session_present)
        client.subscribe([(pattern, 1) for pattern in self.connection.topics])

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self._subscribed.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        log.warning("MQTT: disconnected (%s); reconnecting", reason)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._last_message = time.monotonic()
        self._inbox.put(
            _Received(
                message.topic, bytes(message.payload), message.mid, message.dup, self._generation
            )
        )
