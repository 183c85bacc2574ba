"""The relay's publisher on a broker in process memory: the second implementation of the port.

:class:`MemoryBroker` plays Kafka as the relay relies on it: topics of
partitions; transactions whose messages become visible only once committed;
one epoch per transactional id, so that :meth:`MemoryPublisher.fence` by a
newer publisher makes every later call of an older one fail (and its open
transaction never lands); a largest message size per topic; and outages,
during which fencing and committing fail with the outage's reason.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from cqrskit.envelope import (
    HEADER_EVENT_TYPE,
    HEADER_POSITION,
    HEADER_SEAL,
    WATERMARK_EVENT_TYPE,
    Seal,
)
from cqrskit.errors import KafkaTrouble
from cqrskit.topology import Topology

__all__ = ["MemoryBroker", "MemoryPublisher", "Message"]

#: How a refusal as too large is worded, as librdkafka words it.
TOO_LARGE = "Message size too large"


@dataclass(frozen=True)
class Message:
    """One committed message."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, str | bytes | None], ...]


@dataclass
class MemoryBroker:
    """Topics, committed messages and the epochs of transactional ids."""

    partitions: int = 3
    max_message_bytes: int = 1_000_000
    topics: dict[str, list[list[Message]]] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: While set, the broker is away: fencing and committing raise
    #: KafkaTrouble with this reason (a transaction it held is lost).
    outage: str | None = None
    #: How many calls failed for an outage.
    refused_calls: int = 0

    def check_reachable(self) -> None:
        """Raise the outage, if there is one.

        Raises:
            KafkaTrouble: the broker is away, for :attr:`outage`.
        """
        with self.lock:
            outage = self.outage
            if outage is not None:
                self.refused_calls += 1
        if outage is not None:
            raise KafkaTrouble(outage)

    def create(self, topic: str, partitions: int | None = None) -> bool:
        """Create ``topic`` if missing; True if it was."""
        with self.lock:
            if topic in self.topics:
                return False
            self.topics[topic] = [[] for _ in range(partitions or self.partitions)]
            return True

    def messages(self, topic: str) -> list[Message]:
        """The committed messages of ``topic``, partition by partition."""
        with self.lock:
            return [m for partition in self.topics.get(topic, []) for m in partition]


class MemoryPublisher:
    """A transactional publisher on :class:`MemoryBroker`.

    Implements :class:`cqrskit.relay.Publisher`.
    """

    def __init__(
        self,
        broker: MemoryBroker,
        transactional_id: str,
        on_unreachable: Callable[[str], None] | None = None,
        seal: Seal | None = None,
    ):
        self.broker = broker
        self.transactional_id = transactional_id
        self._on_unreachable = on_unreachable
        self._seal = seal or Seal()
        self.fenced = False
        self._epoch: int | None = None
        self._open = False
        self._pending: list[Message] = []
        self._known: dict[str, int] = {}
        #: (topic, partition) -> the (position, partition count) last marked there.
        self._marked: dict[tuple[str, int], tuple[int, int]] = {}

    def _check(self) -> None:
        if self._epoch is not None and self.broker.epochs.get(self.transactional_id) != self._epoch:
            self.fenced = True
        if self.fenced:
            raise KafkaTrouble(f"Local: fenced by a newer producer of {self.transactional_id!r}")

    def fence(self, timeout: float) -> bool:
        """Take over the transactional id: every older publisher of it fails from now on."""
        self.broker.check_reachable()
        with self.broker.lock:
            self._epoch = self.broker.epochs.get(self.transactional_id, 0) + 1
            self.broker.epochs[self.transactional_id] = self._epoch
        return True

    @property
    def in_transaction(self) -> bool:
        """True between :meth:`begin` and a :meth:`commit` that returned True."""
        return self._open

    def begin(self) -> None:
        """Open a transaction unless one is open."""
        self._check()
        self._open = True

    def commit(self, timeout: float) -> bool:
        """Make the transaction's messages visible, all or none."""
        if not self._open:
            return True
        self.broker.check_reachable()
        with self.broker.lock:
            self._check()
            if any(len(m.value) > self.broker.max_message_bytes for m in self._pending):
                raise KafkaTrouble(f"Broker: {TOO_LARGE}")
            for message in self._pending:
                self.broker.topics[message.topic][message.partition].append(message)
            self._pending.clear()
            self._open = False
        return True

    def produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]],
        *,
        partition: int | None = None,
    ) -> None:
        """Queue one message in the open transaction."""
        self._check()
        count = len(self.broker.topics[topic])
        chosen = zlib.crc32(key) % count if partition is None else partition
        self._pending.append(Message(topic, chosen, key, value, tuple(headers)))

    def ensure_topic(self, topic: str) -> None:
        """Create ``topic`` if it is missing."""
        self.broker.create(topic)

    def partition_count(self, topic: str) -> int:
        """How many partitions ``topic`` has."""
        with self.broker.lock:
            return len(self.broker.topics[topic])

    def known_partitions(self) -> dict[str, int]:
        """Partitions per topic as the last watermark saw them."""
        return dict(self._known)

    def max_message_bytes(self, topic: str, default: int) -> int:
        """The broker's largest message."""
        return self.broker.max_message_bytes

    def refused_as_too_large(self, error: BaseException) -> bool:
        """True if ``error`` (or its cause) is a refusal as too large."""
        return TOO_LARGE in str(error) or TOO_LARGE in str(error.__cause__ or "")

    def publish_watermark(self, topology: Topology, position: int, *, wait: bool = False) -> None:
        """Mark every partition of every event topic with ``position``, once."""
        with self.broker.lock:
            self._known = {
                name: len(partitions)
                for name, partitions in self.broker.topics.items()
                if topology.is_event_topic(name)
            }
        said: list[tuple[str, str | bytes | None]] = [
            (HEADER_EVENT_TYPE, WATERMARK_EVENT_TYPE.encode()),
            (HEADER_POSITION, b"%d" % position),
        ]
        for topic, count in self._known.items():
            value = orjson.dumps({"watermark": position, "partitions": count})
            for partition in range(count):
                at, marked_count = self._marked.get((topic, partition), (-1, 0))
                if at >= position and marked_count == count:
                    continue
                self.begin()
                seal = self._seal.watermark(topic, partition, position, value)
                sealed = (*said, (HEADER_SEAL, seal))
                self._pending.append(Message(topic, partition, None, value, sealed))
                self._marked[(topic, partition)] = (position, count)

    def poll(self, timeout: float = 0.0) -> None:
        """Nothing to serve: messages are delivered on commit."""

    def abandon(self, timeout: float) -> None:
        """Drop the open transaction; never raises."""
        self._open = False
        self._pending.clear()
        self._marked.clear()
