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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import KafkaException
from psycopg.sql import SQL, Identifier

from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters import postgres as pg_backend
from cqrskit.errors import PermanentError, ServiceUnavailable
from cqrskit.relay._outbox import _DDL_LOCK, BEFORE_FIRST
from cqrskit.settings import Settings
from cqrskit.topology import LAYOUT_TABLE, MOVES_TABLE

__all__ = [
    "LayoutStatus",
    "PostgresTopicLayouts",
    "TopicLayout",
    "layout_status",
    "partition_for",
    "request_repartition",
]


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


class PostgresTopicLayouts:
    """The pinned layouts, read and written on the relay leader's session.

    Rows are (topic, after position, partitions); a topic's first row is
    written when the relay first publishes to it, and never changes.
    """

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]], schema: str):
        self.conn = conn
        self.table = Identifier(schema, LAYOUT_TABLE)
        self.moves = Identifier(schema, MOVES_TABLE)

    def ensure_table(self) -> None:
        """Create the table if missing; idempotent, also when run concurrently."""
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", [_DDL_LOCK])
            self.conn.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {table} ("
                    "topic text NOT NULL, "
                    "after_position bigint NOT NULL, "
                    "partitions integer NOT NULL CHECK (partitions > 0), "
                    "recorded_at timestamptz NOT NULL DEFAULT now(), "
                    "PRIMARY KEY (topic, after_position))"
                ).format(table=self.table)
            )
            self.conn.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {moves} ("
                    "topic text PRIMARY KEY, "
                    "partitions integer NOT NULL CHECK (partitions > 0), "
                    "requested_at timestamptz NOT NULL DEFAULT now())"
                ).format(moves=self.moves)
            )

    def load_all(self, start: str) -> dict[str, TopicLayout]:
        """The recorded layout of every topic beginning with ``start`` (``topic_start``)."""
        rows = self.conn.execute(
            SQL(
                "SELECT topic, after_position, partitions FROM {table} "
                "WHERE starts_with(topic, %s) ORDER BY topic, after_position"
            ).format(table=self.table),
            [start],
        ).fetchall()
        steps: dict[str, list[tuple[int, int]]] = {}
        for topic, after, partitions in rows:
            steps.setdefault(str(topic), []).append((int(after), int(partitions)))
        return {topic: TopicLayout(topic, tuple(s)) for topic, s in steps.items()}

    def load(self, topic: str) -> TopicLayout | None:
        """The recorded layout of ``topic``; None if the relay never published to it."""
        rows = self.conn.execute(
            SQL(
                "SELECT after_position, partitions FROM {table} WHERE topic = %s "
                "ORDER BY after_position"
            ).format(table=self.table),
            [topic],
        ).fetchall()
        if not rows:
            return None
        return TopicLayout(topic, tuple((int(a), int(p)) for a, p in rows))

    def pin(self, topic: str, in_kafka: int) -> TopicLayout:
        """The layout of ``topic``, recording ``in_kafka`` partitions if it has none yet.

        Idempotent: a recorded layout is kept whatever the topic has now.

        Raises:
            PermanentError: the topic has fewer partitions than its layout
                uses (it was deleted and re-created smaller).
        """
        self.conn.execute(
            SQL(
                "INSERT INTO {table} (topic, after_position, partitions) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING"
            ).format(table=self.table),
            [topic, BEFORE_FIRST, in_kafka],
        )
        layout = self.load(topic)
        assert layout is not None
        if layout.partitions > in_kafka:
            raise PermanentError(
                f"topic {topic!r} has {in_kafka} partitions in Kafka, but the relay's recorded "
                f"layout sends to {layout.partitions} (table {LAYOUT_TABLE}); was the topic "
                "deleted and re-created with fewer? Give it back its partitions"
            )
        return layout

    def request_move(self, topic: str, partitions: int) -> None:
        """Ask the leading relay to move ``topic`` onto ``partitions``; idempotent.

        Raises:
            PermanentError: the relay never published to ``topic``, or
                ``partitions`` is not more than its layout uses now.
        """
        layout = self.load(topic)
        if layout is None:
            raise PermanentError(
                f"topic {topic!r} has no recorded layout: the relay never published to it, "
                "and will use every partition it has when it first does"
            )
        if partitions <= layout.partitions:
            raise PermanentError(
                f"topic {topic!r} already uses {layout.partitions} partitions; a move "
                f"onto {partitions} can only add partitions"
            )
        self.conn.execute(
            SQL(
                "INSERT INTO {moves} (topic, partitions) VALUES (%s, %s) "
                "ON CONFLICT (topic) DO UPDATE SET partitions = excluded.partitions"
            ).format(moves=self.moves),
            [topic, partitions],
        )

    def pending_moves(self) -> dict[str, int]:
        """Requested moves: topic -> partitions."""
        rows = self.conn.execute(
            SQL("SELECT topic, partitions FROM {moves}").format(moves=self.moves)
        ).fetchall()
        return {str(topic): int(partitions) for topic, partitions in rows}

    def adopt(self, topic: str, after: int, partitions: int) -> TopicLayout:
        """Record the move of ``topic`` onto ``partitions`` for events after ``after``.

        Only the leader calls it, once it has sent every stored event up to
        ``after`` (so none after it went out with the old count). Idempotent.
        """
        with self.conn.transaction():
            self.conn.execute(
                SQL(
                    "INSERT INTO {table} (topic, after_position, partitions) "
                    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
                ).format(table=self.table),
                [topic, after, partitions],
            )
            self.conn.execute(
                SQL("DELETE FROM {moves} WHERE topic = %s").format(moves=self.moves), [topic]
            )
        layout = self.load(topic)
        assert layout is not None
        return layout


@dataclass(frozen=True)
class LayoutStatus:
    """One topic's partitions: how many the relay sends events to, how many Kafka has."""

    topic: str
    used: int
    #: None when Kafka did not answer.
    in_kafka: int | None
    #: Partitions of a requested move the relay has not taken up yet.
    moving_to: int | None = None

    @property
    def unused(self) -> int:
        """Partitions that receive watermarks only."""
        return 0 if self.in_kafka is None else max(0, self.in_kafka - self.used)


def layout_status(settings: Settings, start: str) -> list[LayoutStatus]:
    """The pinned layout of every topic beginning with ``start``, beside its partitions in Kafka.

    Raises:
        ServiceUnavailable: PostgreSQL cannot be reached (Kafka being away
            only leaves ``in_kafka`` unknown).
    """
    with pg_backend.connect(settings) as conn:
        layouts = PostgresTopicLayouts(conn, settings.postgres_schema)
        layouts.ensure_table()
        rows = conn.execute(
            SQL(
                "SELECT DISTINCT ON (topic) topic, partitions FROM {table} "
                "WHERE starts_with(topic, %s) ORDER BY topic, after_position DESC"
            ).format(table=layouts.table),
            [start],
        ).fetchall()
        moves = layouts.pending_moves()
    counts: dict[str, int] = {}
    try:
        if rows:
            client = kafka_backend.admin(settings)
            metadata = client.list_topics(timeout=settings.connect_timeout)
            counts = {name: len(t.partitions) for name, t in metadata.topics.items()}
    except (KafkaException, ServiceUnavailable):
        counts = {}
    known = bool(counts)
    return [
        LayoutStatus(
            str(topic), int(used), counts.get(str(topic)) if known else None, moves.get(topic)
        )
        for topic, used in rows
    ]


def request_repartition(
    settings: Settings, start: str, topics: Sequence[str] = ()
) -> list[tuple[str, int, int]]:
    """Ask the leading relay to move topics onto every partition they have in Kafka.

    ``topics`` defaults to every topic beginning with ``start`` the relay publishes to.
    Returns (topic, partitions used now, partitions moved to) for each move
    requested; topics that use all their partitions already are left alone.
    Idempotent. The relay takes a move up once it has caught up with the
    store; ``relay status`` shows it pending until then.

    Raises:
        ServiceUnavailable: PostgreSQL or Kafka cannot be reached.
        PermanentError: a named topic has no recorded layout.
    """
    with kafka_backend.translated(settings.kafka_bootstrap):
        metadata = kafka_backend.admin(settings).list_topics(timeout=settings.connect_timeout)
    requested: list[tuple[str, int, int]] = []
    with pg_backend.connect(settings) as conn:
        layouts = PostgresTopicLayouts(conn, settings.postgres_schema)
        layouts.ensure_table()
        known = layouts.load_all(start)
        unknown = sorted(set(topics) - known.keys())
        if unknown:
            raise PermanentError(
                f"no recorded layout for {', '.join(unknown)}: the relay publishes to "
                f"{', '.join(sorted(known)) or 'no topic yet'}"
            )
        for topic in topics or sorted(known):
            found = metadata.topics.get(topic)
            in_kafka = len(found.partitions) if found is not None else 0
            if in_kafka > known[topic].partitions:
                layouts.request_move(topic, in_kafka)
                requested.append((topic, known[topic].partitions, in_kafka))
    return requested
