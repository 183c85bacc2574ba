"""The relay's outbox and layouts in process memory: the second implementation of each port.

:class:`MemoryEvents` plays the database: the stored events in commit order,
each relay's position, its lease and the pinned layouts. Each
:class:`MemoryOutbox` plays one session on it, with PostgreSQL's semantics
as the relay relies on them: one session leads at a time; leading, recording
and heartbeating need the session that leads; a closed or ended session
raises :class:`~cqrskit.errors.LostSession` from every call.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from cqrskit.errors import LostSession, PermanentError
from cqrskit.relay import BEFORE_FIRST, OutboxRow, RelayStatus, TopicLayout

__all__ = ["MemoryEvents", "MemoryOutbox", "MemoryTopicLayouts"]


@dataclass
class _Lease:
    session: int
    instance: str
    heartbeat_at: float


@dataclass
class MemoryEvents:
    """The stored events of one application, with the relays' rows and layouts beside them."""

    rows: list[OutboxRow] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    leases: dict[str, _Lease] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    layouts: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    moves: dict[str, int] = field(default_factory=dict)
    #: Sessions ended from outside (a standby ended a silent leader's).
    ended: set[int] = field(default_factory=set)
    changed: threading.Condition = field(default_factory=threading.Condition)
    _sessions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def append(self, aggregate_id: str, version: int, topic: str, state: bytes) -> int:
        """Store one event; its position (gap-free, in commit order)."""
        with self.changed:
            position = len(self.rows) + 1
            self.rows.append((position, aggregate_id, version, topic, state))
            self.changed.notify_all()
            return position

    def new_session(self) -> int:
        """A session id never used before."""
        return next(self._sessions)

    def status(self, relay_name: str, application: str, lease: float) -> RelayStatus:
        """Where the relay is, as ``read_status`` says it for PostgreSQL."""
        with self.changed:
            position = self.positions.get(relay_name, BEFORE_FIRST)
            held = self.leases.get(relay_name)
            head = len(self.rows)
            alive = held is not None and time.monotonic() - held.heartbeat_at < lease
            return RelayStatus(
                name=relay_name,
                application=application,
                position=position,
                head=head,
                lag_events=max(0, head - position),
                lag_seconds=0.0,
                active_instance=held.instance if held is not None and alive else None,
                heartbeat_at=None,
                last_error=self.errors.get(relay_name),
                last_error_at=None,
            )


class MemoryOutbox:
    """One relay's session on :class:`MemoryEvents`; implements :class:`cqrskit.relay.Outbox`."""

    def __init__(self, events: MemoryEvents, relay_name: str = "default"):
        self.events = events
        self.relay_name = relay_name
        self._session: int | None = None

    def _live(self) -> int:
        session = self._session
        if session is None or session in self.events.ended:
            raise LostSession("the relay's session is closed")
        return session

    def connect(self) -> None:
        """Open a new session (ending any this outbox had)."""
        self.close()
        self._session = self.events.new_session()

    def close(self) -> None:
        """End the session, and with it any leadership."""
        with self.events.changed:
            held = self.events.leases.get(self.relay_name)
            if held is not None and held.session == self._session:
                del self.events.leases[self.relay_name]
            self._session = None

    def try_lead(self, instance: str) -> bool:
        """Lead if no other live session does; True if we lead now."""
        with self.events.changed:
            session = self._live()
            held = self.events.leases.get(self.relay_name)
            if held is not None and held.session != session:
                return False
            self.events.leases[self.relay_name] = _Lease(session, instance, time.monotonic())
            return True

    def end_silent_leader(self, lease: float) -> int | None:
        """End the leader's session if its heartbeat is older than ``lease`` seconds."""
        with self.events.changed:
            self._live()
            held = self.events.leases.get(self.relay_name)
            if held is None or time.monotonic() - held.heartbeat_at <= lease:
                return None
            self.events.ended.add(held.session)
            del self.events.leases[self.relay_name]
            return held.session

    def _renew(self, position: int | None) -> bool:
        with self.events.changed:
            session = self._live()
            held = self.events.leases.get(self.relay_name)
            if held is None or held.session != session:
                return False
            held.heartbeat_at = time.monotonic()
            if position is not None:
                self.events.positions[self.relay_name] = position
            return True

    def position(self) -> int:
        """The last position recorded."""
        with self.events.changed:
            self._live()
            return self.events.positions.get(self.relay_name, BEFORE_FIRST)

    def read(self, after: int, limit: int) -> Sequence[OutboxRow]:
        """Up to ``limit`` events after ``after``, in commit order."""
        with self.events.changed:
            self._live()
            return self.events.rows[max(0, after) : max(0, after) + limit]

    def record(self, position: int) -> bool:
        """Record ``position`` and renew the lease; False if we do not lead."""
        return self._renew(position)

    def heartbeat(self) -> bool:
        """Renew the lease; False if we do not lead."""
        return self._renew(None)

    def record_error(self, error: str) -> None:
        """Keep the latest error; best effort."""
        with self.events.changed:
            self.events.errors[self.relay_name] = error[:2000]

    def lag(self, position: int) -> tuple[int, int, float]:
        """(store head, events after ``position``, age in seconds of the oldest of them)."""
        with self.events.changed:
            self._live()
            head = len(self.events.rows)
            seconds = 0.0
            if position < head:
                stamp = orjson.loads(self.events.rows[max(0, position)][4]).get("timestamp")
                if stamp:
                    age = datetime.now(UTC) - datetime.fromisoformat(stamp)
                    seconds = max(0.0, age.total_seconds())
            return head, max(0, head - position), seconds

    def wait_for_events(self, timeout: float) -> None:
        """Block until an event is appended or ``timeout`` passes."""
        with self.events.changed:
            self._live()
            self.events.changed.wait(timeout)

    def layouts(self) -> MemoryTopicLayouts:
        """The pinned layouts, on this session."""
        self._live()
        return MemoryTopicLayouts(self)


class MemoryTopicLayouts:
    """The layouts kept in :class:`MemoryEvents`; implements :class:`cqrskit.relay.TopicLayouts`."""

    def __init__(self, outbox: MemoryOutbox):
        self._outbox = outbox
        self._events = outbox.events

    def load_all(self, start: str) -> dict[str, TopicLayout]:
        """Every recorded layout of a topic beginning with ``start``."""
        with self._events.changed:
            self._outbox._live()
            return {
                topic: TopicLayout(topic, tuple(steps))
                for topic, steps in sorted(self._events.layouts.items())
                if topic.startswith(start)
            }

    def pin(self, topic: str, in_kafka: int) -> TopicLayout:
        """The layout of ``topic``, recording ``in_kafka`` partitions if it has none yet."""
        with self._events.changed:
            self._outbox._live()
            steps = self._events.layouts.setdefault(topic, [(BEFORE_FIRST, in_kafka)])
            layout = TopicLayout(topic, tuple(steps))
        if layout.partitions > in_kafka:
            raise PermanentError(
                f"topic {topic!r} has {in_kafka} partitions, but its recorded layout "
                f"sends to {layout.partitions}"
            )
        return layout

    def request_move(self, topic: str, partitions: int) -> None:
        """Ask the leading relay to move ``topic`` onto ``partitions``."""
        with self._events.changed:
            self._events.moves[topic] = partitions

    def pending_moves(self) -> dict[str, int]:
        """Requested moves: topic -> partitions."""
        with self._events.changed:
            self._outbox._live()
            return dict(self._events.moves)

    def adopt(self, topic: str, after: int, partitions: int) -> TopicLayout:
        """Record the move of ``topic`` onto ``partitions`` for events after ``after``."""
        with self._events.changed:
            self._outbox._live()
            steps = self._events.layouts.setdefault(topic, [])
            if all(a != after for a, _ in steps):
                steps.append((after, partitions))
                steps.sort()
            self._events.moves.pop(topic, None)
            return TopicLayout(topic, tuple(steps))
