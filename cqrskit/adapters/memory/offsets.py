"""A projection's topics' offsets in memory: the second ``TopicOffsets``.

Over :class:`~cqrskit.adapters.memory.subscription.MemoryTopics`: the live
group's committed offsets, the ends, the lag and a replay of the messages
between, for rebuilds and status without a Kafka cluster.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from cqrskit.adapters.memory.subscription import MemoryTopics
from cqrskit.projections._ports import BEGINNING
from cqrskit.subscription import Message, Partition
from cqrskit.topology import parse_partition_key

__all__ = ["MemoryTopicOffsets"]


class MemoryTopicOffsets:
    """A :class:`~cqrskit.projections.TopicOffsets` of ``topics`` in ``broker``."""

    def __init__(self, broker: MemoryTopics, topics: Sequence[str], *, live_group: str):
        self.broker = broker
        self.topics = list(topics)
        self.live_group = live_group

    def _partitions(self) -> list[Partition]:
        return [p for topic in self.topics for p in self.broker.partitions_of(topic)]

    def committed(self) -> dict[str, int]:
        """The live group's committed offsets (:data:`BEGINNING` if none); creates the topics."""
        for topic in self.topics:
            self.broker.create(topic)
        found = {}
        for partition in self._partitions():
            offset = self.broker.committed(self.live_group, partition)
            found[partition.key] = BEGINNING if offset is None else offset
        return found

    def ends(self) -> dict[str, int]:
        """The offset the next message of each partition will get."""
        return {p.key: self.broker.end(p) for p in self._partitions()}

    def lag(self) -> int:
        """Messages the live group has not committed past."""
        return sum(
            self.broker.end(p) - (self.broker.committed(self.live_group, p) or 0)
            for p in self._partitions()
        )

    def replay(
        self, start: Mapping[str, int], ends: Mapping[str, int], batch_size: int
    ) -> Iterator[Sequence[Message]]:
        """The messages from ``start`` up to ``ends``, in batches of at most ``batch_size``."""
        for key in sorted(ends):
            partition = Partition(*parse_partition_key(key))
            offset = max(0, start.get(key, BEGINNING))
            while offset < ends[key]:
                batch = self.broker.read({partition: offset}, min(batch_size, ends[key] - offset))
                if not batch:
                    break  # nothing more there (the end was read before a truncation)
                offset = batch[-1].next_offset
                yield batch
