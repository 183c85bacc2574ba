"""Each topic's partition layout, pinned in PostgreSQL: the partition of every event.

Documents guard per partition (decision 0003), which holds only if an event
always lands on the same partition, and Kafka keeps an aggregate's order
only within one partition. librdkafka's partitioner picks ``crc32(key) %
partitions`` with whatever count it last saw in the cluster's metadata: once
an operator added partitions, a relay re-sending its unrecorded tail put
events on other partitions (applied twice), and an aggregate's next events
went to a partition read apart from its earlier ones (applied out of order).

So the relay computes the partition itself, with librdkafka's hash, from the
partition count it recorded here when it first published to the topic.
Partitions added later carry watermarks but no events, and the relay warns
about them. A layout is a list of steps, each a count used for the events
after a position; the partition of an event depends only on its key and its
position, so a re-send always repeats the first send. ``cqrskit relay
repartition`` requests a new step; the leading relay records it at the
position it has caught up to (so nothing after it was sent with the old
count), and events after that boundary carry the boundary in a header that
workers wait on.
See docs/decisions/0009-guards-that-survive-repartitioning.md.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

__all__ = ["LayoutStatus", "TopicLayout", "partition_for"]


def partition_for(key: bytes, partitions: int) -> int:
    """The partition librdkafka's default partitioner picks for a non-empty ``key``.

    ``consistent_random`` (librdkafka's default, which cqrskit's producer
    keeps) hashes a key with CRC-32 (``rd_crc32``, the same polynomial and
    reflection as zlib's) modulo the partition count, so topics keep the
    key -> partition mapping they had before the relay pinned it.
    """
    return zlib.crc32(key) % partitions


@dataclass(frozen=True)
class TopicLayout:
    """How one topic's events are spread: partition counts by position."""

    topic: str
    #: (after position, partition count), oldest first: events after the
    #: position, up to the next step's, use that count.
    steps: tuple[tuple[int, int], ...]

    @property
    def partitions(self) -> int:
        """The count used for new events."""
        return self.steps[-1][1]

    def partition(self, key: bytes, position: int) -> int:
        """The partition of the event at ``position`` with ``key``; the same on every send."""
        after, count = self.steps[-1]
        if position <= after:  # a re-send from before the latest step
            count = next(c for a, c in reversed(self.steps) if position > a)
        return zlib.crc32(key) % count

    def barrier(self, position: int) -> bytes | None:
        """``b"<boundary>:<previous count>"`` for an event after a move; None before any."""
        for step in range(len(self.steps) - 1, 0, -1):
            after = self.steps[step][0]
            if position > after:
                return b"%d:%d" % (after, self.steps[step - 1][1])
        return None


@dataclass(frozen=True)
class LayoutStatus:
    """One topic's partitions: how many the relay sends events to, how many Kafka has."""

    topic: str
    used: int
    #: None when Kafka did not answer.
    in_kafka: int | None
    #: Partitions of a requested move the relay has not taken up yet.
    moving_to: int | None = None
    #: Why ``in_kafka`` is None: the error's one line, naming the setting.
    kafka_error: str = ""

    @property
    def unused(self) -> int:
        """Partitions that receive watermarks only."""
        return 0 if self.in_kafka is None else max(0, self.in_kafka - self.used)
