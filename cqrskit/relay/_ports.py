"""What the relay needs of the outbox, of the broker and of the layouts' table.

The relay's algorithm (lead, fence, publish, record) lives in
:mod:`cqrskit.relay._relay` and speaks only to these ports; the adapters
(``cqrskit.adapters.postgres.outbox``, ``cqrskit.adapters.postgres.layouts``,
``cqrskit.adapters.kafka.publisher``, and the in-memory pair in
``cqrskit.adapters.memory``) translate every driver error into cqrskit's
tree, so the relay catches cqrskit errors only:

- :class:`~cqrskit.errors.LostSession`: the outbox's session (and with it the
  leadership) is gone;
- :class:`~cqrskit.errors.PermanentError`: the events table is missing, or
  the database refuses something retrying cannot fix;
- :class:`~cqrskit.errors.KafkaTrouble`: the broker or the producer failed
  mid-publish; ``Publisher.fenced`` says whether a newer producer fenced it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cqrskit.envelope import Seal
from cqrskit.relay._layout import TopicLayout
from cqrskit.topology import Topology

__all__ = [
    "BEFORE_FIRST",
    "Outbox",
    "OutboxRow",
    "Publisher",
    "Publishers",
    "RelayStatus",
    "TopicLayouts",
]

#: The position before the first event: nothing published yet.
BEFORE_FIRST = 0

#: One stored event as the relay reads it:
#: (position, aggregate id as text, aggregate version, event topic, stored state).
OutboxRow = tuple[int, str, int, str, bytes]


@dataclass(frozen=True)
class RelayStatus:
    """Where a relay is, as ``cqrskit relay status`` shows it."""

    name: str
    application: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    active_instance: str | None
    heartbeat_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


class TopicLayouts(Protocol):
    """Each topic's pinned partition layout, read and written on the leader's session."""

    def load_all(self, start: str) -> dict[str, TopicLayout]:
        """The recorded layout of every topic beginning with ``start``."""
        ...

    def pin(self, topic: str, in_kafka: int) -> TopicLayout:
        """The layout of ``topic``, recording ``in_kafka`` partitions if it has none yet.

        Raises:
            PermanentError: the topic has fewer partitions than its layout uses.
        """
        ...

    def pending_moves(self) -> dict[str, int]:
        """Requested moves onto more partitions: topic -> partitions."""
        ...

    def adopt(self, topic: str, after: int, partitions: int) -> TopicLayout:
        """Record the move of ``topic`` onto ``partitions`` for events after ``after``."""
        ...


class Outbox(Protocol):
    """The events table read as an outbox, the relay's position and its leadership.

    Everything happens on one session: the one that holds the lead. Losing
    it (:class:`~cqrskit.errors.LostSession`) loses the lead and the power
    to record.
    """

    def connect(self) -> None:
        """Open the session that leads, reads and records.

        Raises:
            ServiceUnavailable: the store cannot be reached.
        """
        ...

    def close(self) -> None:
        """End the session, and with it any leadership."""
        ...

    def try_lead(self, instance: str) -> bool:
        """Take leadership if no other session holds it; True if we lead now."""
        ...

    def end_silent_leader(self, lease: float) -> int | None:
        """End the leader's session if its lease expired; the session ended, if any."""
        ...

    def position(self) -> int:
        """The last position acknowledged by the broker and recorded."""
        ...

    def read(self, after: int, limit: int) -> Sequence[OutboxRow]:
        """Up to ``limit`` events after ``after``, in commit order."""
        ...

    def record(self, position: int) -> bool:
        """Record ``position`` as published and renew the lease; False if we do not lead."""
        ...

    def heartbeat(self) -> bool:
        """Renew the lease; False if we do not lead."""
        ...

    def record_error(self, error: str) -> None:
        """Keep the latest error for ``relay status``; best effort."""
        ...

    def lag(self, position: int) -> tuple[int, int, float]:
        """(store head, events after ``position``, age in seconds of the oldest of them)."""
        ...

    def wait_for_events(self, timeout: float) -> None:
        """Block until an append is notified or ``timeout`` passes."""
        ...

    def layouts(self) -> TopicLayouts:
        """The pinned layouts, on this outbox's (the leader's) session."""
        ...


class Publisher(Protocol):
    """A transactional producer: fenced by a newer one of its transactional id.

    Produce only between :meth:`begin` and :meth:`commit`; call :meth:`fence`
    once before the first :meth:`begin`. Its calls raise
    :class:`~cqrskit.errors.KafkaTrouble` when the broker or the producer
    fails; :attr:`fenced` is then True if a newer producer fenced this one.
    """

    #: True once a newer producer of the transactional id fenced this one.
    fenced: bool

    def fence(self, timeout: float) -> bool:
        """Abort and fence any older producer; False if not done within ``timeout``."""
        ...

    @property
    def in_transaction(self) -> bool:
        """True between :meth:`begin` and a :meth:`commit` that returned True."""
        ...

    def begin(self) -> None:
        """Open a transaction unless one is open; idempotent."""
        ...

    def commit(self, timeout: float) -> bool:
        """Deliver and commit the transaction; False if not done within ``timeout``."""
        ...

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
        ...

    def ensure_topic(self, topic: str) -> None:
        """Create ``topic`` if it is missing."""
        ...

    def partition_count(self, topic: str) -> int:
        """How many partitions ``topic`` has now."""
        ...

    def known_partitions(self) -> dict[str, int]:
        """Partitions per topic as the last refresh for watermarks saw them."""
        ...

    def max_message_bytes(self, topic: str, default: int) -> int:
        """The largest message ``topic`` accepts, or ``default`` if the broker does not say."""
        ...

    def refused_as_too_large(self, error: BaseException) -> bool:
        """True if ``error`` says the broker or producer refused a message as too large."""
        ...

    def publish_watermark(self, topology: Topology, position: int, *, wait: bool = False) -> None:
        """Tell every partition of every event topic: events up to ``position`` were sent."""
        ...

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks; raises KafkaTrouble once the producer is dead."""
        ...

    def abandon(self, timeout: float) -> None:
        """Abort the open transaction and drop every queued message; never raises."""
        ...


class Publishers(Protocol):
    """Makes a new publisher for each session the relay leads."""

    def __call__(
        self,
        transactional_id: str,
        on_unreachable: Callable[[str], None] | None = None,
        seal: Seal | None = None,
    ) -> Publisher:
        """A publisher of ``transactional_id``, calling ``on_unreachable`` with a reason."""
        ...
