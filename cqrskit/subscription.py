"""The port of a consumer-group member: :class:`Subscription`, and what it delivers.

A stage that consumes the event topics as one member of a group (a saga
runner, a projection worker) polls :class:`Message` records, plain
values with no driver type in them, commits the offsets it is done with,
and is told which partitions it was given, where it may choose the offset
each starts from. Kafka's implementation is
``cqrskit.adapters.kafka.subscription.KafkaSubscription``.

This module is neutral ground: it imports no stage, so the saga runner and
the projection worker can share the port without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cqrskit.topology import partition_key

__all__ = [
    "Assigned",
    "Message",
    "Partition",
    "PausableSubscription",
    "Rejoined",
    "Revoked",
    "Subscription",
]


@dataclass(frozen=True, order=True)
class Partition:
    """One partition of one topic."""

    topic: str
    partition: int

    @property
    def key(self) -> str:
        """Its name in recorded positions (``topic/partition``, see ``partition_key``)."""
        return partition_key(self.topic, self.partition)


@dataclass(frozen=True)
class Message:
    """One message as delivered: where it sits, its headers and its bytes."""

    topic: str
    partition: int
    offset: int
    value: bytes
    #: Header name -> value (the last value of a repeated name wins).
    headers: Mapping[str, bytes] = field(default_factory=dict)
    key: bytes | None = None
    #: When the broker took it (seconds since the epoch; 0 if not known).
    timestamp: float = 0.0

    @property
    def source(self) -> Partition:
        """The partition it came from."""
        return Partition(self.topic, self.partition)

    @property
    def next_offset(self) -> int:
        """The offset to commit once it is handled: the one after it."""
        return self.offset + 1


#: Called with the partitions just assigned; returns the offset to start some
#: of them at (the others start at the group's committed offset).
Assigned = Callable[[list[Partition]], Mapping[Partition, int]]
#: Called with the partitions taken away (a rebalance).
Revoked = Callable[[list[Partition]], None]
#: Called when the member had to join its group again with a new consumer:
#: what it was assigned is gone, and no revoke callback says so.
Rejoined = Callable[[], None]


class Subscription(Protocol):
    """Membership of one consumer group, on the topics it was built for."""

    def subscribe(
        self,
        on_assigned: Assigned,
        on_revoked: Revoked | None = None,
        on_rejoined: Rejoined | None = None,
    ) -> None:
        """Make sure the topics exist, then join the group.

        Idempotent until it succeeds; call it once before :meth:`poll`.
        The callbacks run on the polling thread, from within :meth:`poll`.

        Raises:
            ServiceUnavailable: the cluster did not answer; call it again.
            PermanentError: the cluster refused to create a topic.
        """
        ...

    def poll(self, max_messages: int, timeout: float) -> Sequence[Message]:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds for the first.

        Never waits for a batch to fill: after the first message it takes
        only what has already arrived. Empty when none came. Messages
        carrying a consumer error (an event, not data) are left out.

        Raises:
            PermanentError: the consumer failed for good (a fatal error).
        """
        ...

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit the next offset to read per partition, asynchronously.

        Best effort: a commit lost to a rebalance means messages delivered
        again, so consumers guard their effects.

        Raises:
            ServiceUnavailable: the commit could not be requested.
        """
        ...

    def close(self) -> None:
        """Leave the group (waiting no longer than the close time-out); idempotent."""
        ...


class PausableSubscription(Subscription, Protocol):
    """A :class:`Subscription` whose partitions can be held back and inspected.

    What a projection worker needs beyond a saga runner: where the group
    resumed each partition, how far this member has read, holding a
    partition at a message until it may go on, and the lag.
    """

    def committed(self, partitions: Sequence[Partition]) -> Mapping[Partition, int | None]:
        """The group's committed offset per partition (None where nothing was committed).

        Raises:
            ServiceUnavailable: the cluster did not answer in time.
        """
        ...

    def positions(self) -> Mapping[Partition, int]:
        """The offset of the next message :meth:`poll` returns, per assigned partition
        that has delivered or skipped something (messages before it were all returned).

        Raises:
            ServiceUnavailable: the consumer could not say.
        """
        ...

    def pause_at(self, partition: Partition, offset: int) -> None:
        """Stop delivering ``partition`` and rewind it to ``offset``, until :meth:`resume`."""
        ...

    def resume(self, partitions: Sequence[Partition]) -> None:
        """Deliver ``partitions`` again, from where :meth:`pause_at` left them."""
        ...

    def lag(self) -> int | None:
        """Messages in the assigned partitions not delivered yet (None if unknown now)."""
        ...
