"""The ``Subscription`` contract in memory: topics as lists, one member per group.

:class:`MemoryTopics` holds the partitions' messages and each group's
committed offsets; a :class:`MemorySubscription` is the only member of its
group, so it is assigned every partition of its topics when it subscribes.
For tests of stages that consume (a saga runner) without a Kafka cluster.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from cqrskit.subscription import Assigned, Message, Partition, Rejoined, Revoked

__all__ = ["MemorySubscription", "MemoryTopics"]


class MemoryTopics:
    """Topics of ``partitions`` partitions each, created on first use; thread-safe."""

    def __init__(self, partitions: int = 3):
        self.partitions = partitions
        self._lock = threading.Lock()
        self._logs: dict[Partition, list[Message]] = {}
        self._committed: dict[tuple[str, Partition], int] = {}
        self._arrived = threading.Condition(self._lock)

    def create(self, topic: str) -> None:
        """Create ``topic`` unless it exists; idempotent."""
        with self._lock:
            for n in range(self.partitions):
                self._logs.setdefault(Partition(topic, n), [])

    def partitions_of(self, topic: str) -> list[Partition]:
        """The partitions of ``topic`` (none if it does not exist)."""
        with self._lock:
            return sorted(p for p in self._logs if p.topic == topic)

    def append(
        self,
        topic: str,
        partition: int,
        value: bytes,
        headers: Mapping[str, bytes] | None = None,
        key: bytes | None = None,
    ) -> Message:
        """Append a message to ``topic``'s ``partition`` (creating the topic); the message."""
        self.create(topic)
        with self._arrived:
            log = self._logs[Partition(topic, partition)]
            message = Message(topic, partition, len(log), value, dict(headers or {}), key)
            log.append(message)
            self._arrived.notify_all()
        return message

    def read(self, positions: Mapping[Partition, int], limit: int) -> list[Message]:
        """Up to ``limit`` messages from ``positions`` on, partition by partition."""
        with self._lock:
            found: list[Message] = []
            for partition, offset in sorted(positions.items()):
                found += self._logs.get(partition, [])[offset : offset + limit - len(found)]
            return found

    def end(self, partition: Partition) -> int:
        """The offset the next message appended to ``partition`` gets."""
        with self._lock:
            return len(self._logs.get(partition, []))

    def wait(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for any message to be appended."""
        with self._arrived:
            self._arrived.wait(timeout)

    def committed(self, group: str, partition: Partition) -> int | None:
        """``group``'s committed offset on ``partition``, if any."""
        with self._lock:
            return self._committed.get((group, partition))

    def commit(self, group: str, offsets: Mapping[Partition, int]) -> None:
        """Record ``group``'s next offsets to read."""
        with self._lock:
            for partition, offset in offsets.items():
                self._committed[(group, partition)] = offset


class MemorySubscription:
    """The only member of ``group`` on ``topics`` of ``broker``."""

    def __init__(self, broker: MemoryTopics, group: str, topics: Sequence[str]):
        self.broker = broker
        self.group = group
        self.topics = list(topics)
        self._positions: dict[Partition, int] | None = None
        self._paused: set[Partition] = set()
        self._on_revoked: Revoked | None = None

    def subscribe(
        self,
        on_assigned: Assigned,
        on_revoked: Revoked | None = None,
        on_rejoined: Rejoined | None = None,
    ) -> None:
        """Create the topics and take every partition of them; idempotent."""
        if self._positions is not None:
            return
        for topic in self.topics:
            self.broker.create(topic)
        partitions = [p for topic in self.topics for p in self.broker.partitions_of(topic)]
        starts = on_assigned(partitions)
        self._positions = {}
        for partition in partitions:
            committed = self.broker.committed(self.group, partition)
            start = starts.get(partition, committed if committed is not None else 0)
            self._positions[partition] = start
        self._on_revoked = on_revoked

    def poll(self, max_messages: int, timeout: float) -> Sequence[Message]:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` for the first."""
        if self._positions is None:
            raise RuntimeError(f"group {self.group}: poll before subscribe")
        live = {p: o for p, o in self._positions.items() if p not in self._paused}
        found = self.broker.read(live, max_messages)
        if not found:
            self.broker.wait(timeout)
            found = self.broker.read(live, max_messages)
        for message in found:
            self._positions[message.source] = message.next_offset
        return found

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Record the group's next offsets to read."""
        self.broker.commit(self.group, offsets)

    def committed(self, partitions: Sequence[Partition]) -> Mapping[Partition, int | None]:
        """The group's committed offset per partition (None where nothing was committed)."""
        return {p: self.broker.committed(self.group, p) for p in partitions}

    def positions(self) -> Mapping[Partition, int]:
        """The next offset :meth:`poll` returns, per assigned partition."""
        return dict(self._positions or {})

    def pause_at(self, partition: Partition, offset: int) -> None:
        """Stop delivering ``partition`` and rewind it to ``offset``, until :meth:`resume`."""
        if self._positions is not None and partition in self._positions:
            self._paused.add(partition)
            self._positions[partition] = offset

    def resume(self, partitions: Sequence[Partition]) -> None:
        """Deliver ``partitions`` again."""
        self._paused.difference_update(partitions)

    def lag(self) -> int | None:
        """Messages in the assigned partitions not delivered yet."""
        if self._positions is None:
            return None
        return sum(self.broker.end(p) - o for p, o in self._positions.items())

    def close(self) -> None:
        """Leave the group: its partitions are revoked; idempotent."""
        if self._positions is None:
            return
        partitions, self._positions = sorted(self._positions), None
        if self._on_revoked is not None:
            self._on_revoked(partitions)
