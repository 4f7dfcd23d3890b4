"""What the stream loop needs of a source of messages, and the messages it holds."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

# partition -> the position it stands at in the tables (where the next record is read)
Positions = Callable[[], dict[str, int]]


class Message(NamedTuple):
    """One record of a stream partition (a tuple: a batch makes hundreds of thousands)."""

    dataset: str
    partition: str  # `topic/3` for Kafka; the topic for MQTT
    position: int  # the Kafka offset; a sequence number for MQTT
    value: bytes


class Feed(Protocol):
    """A source of messages with positions: Kafka, MQTT, …"""

    kind: str  # `kafka`, `mqtt`: bronze's `source`

    def start(self, positions: Positions) -> None:
        """Connect; place every partition it is given at its position in the tables."""

    def poll(self, timeout: float, limit: int) -> list[Message]:
        """Up to `limit` messages, waiting at most `timeout` seconds for the first."""

    def revoked(self) -> set[str]:
        """Partitions taken away since the last call: held records of them are dropped
        (their next owner reads them from where the tables stand)."""

    def caught_up(self) -> bool:
        """Whether every partition it reads has been read to its end (for `--once`)."""

    def assigned(self) -> bool:
        """Whether it was given any partition to read yet."""

    def done(self, ends: dict[str, int]) -> None:
        """A batch holding these partitions up to these positions is committed."""

    def high_watermarks(self) -> dict[str, int] | None:
        """Per partition read, the position after its last record on the broker (for the
        lag metric); None where the source has no such thing (MQTT)."""

    def close(self) -> None:
        """Disconnect."""


@dataclass
class Held:
    """Messages polled and not yet committed, in arrival order."""

    messages: list[Message] = field(default_factory=list)

    def add(self, batch: Iterable[Message]) -> None:
        """Hold more."""
        self.messages.extend(batch)

    def drop(self, partitions: set[str]) -> int:
        """Let go of the messages of these partitions; how many went."""
        if not partitions:
            return 0
        kept = [m for m in self.messages if m.partition not in partitions]
        gone = len(self.messages) - len(kept)
        self.messages = kept
        return gone

    def ends(self) -> dict[str, int]:
        """Per partition, the position after the last message held."""
        ends: dict[str, int] = {}
        for m in self.messages:
            ends[m.partition] = max(ends.get(m.partition, 0), m.position + 1)
        return ends

    def __len__(self) -> int:
        return len(self.messages)
