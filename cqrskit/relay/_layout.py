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
position, so a re-send always repeats the first send.
See docs/decisions/0009-guards-that-survive-repartitioning.md.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import KafkaException
from psycopg.sql import SQL, Identifier

from cqrskit.backends import kafka as kafka_backend
from cqrskit.backends import postgres as pg_backend
from cqrskit.errors import PermanentError, ServiceUnavailable
from cqrskit.relay._outbox import _DDL_LOCK, BEFORE_FIRST
from cqrskit.settings import Settings

__all__ = ["LayoutStatus", "PostgresTopicLayouts", "TopicLayout", "layout_status", "partition_for"]

#: The table of pinned layouts, in the event store's schema.
LAYOUT_TABLE = "cqrskit_topic_layout"


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


class PostgresTopicLayouts:
    """The pinned layouts, read and written on the relay leader's session.

    Rows are (topic, after position, partitions); a topic's first row is
    written when the relay first publishes to it, and never changes.
    """

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]], schema: str):
        self.conn = conn
        self.table = Identifier(schema, LAYOUT_TABLE)

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


@dataclass(frozen=True)
class LayoutStatus:
    """One topic's partitions: how many the relay sends events to, how many Kafka has."""

    topic: str
    used: int
    #: None when Kafka did not answer.
    in_kafka: int | None

    @property
    def unused(self) -> int:
        """Partitions that receive watermarks only."""
        return 0 if self.in_kafka is None else max(0, self.in_kafka - self.used)


def layout_status(settings: Settings, prefix: str) -> list[LayoutStatus]:
    """The pinned layout of every ``<prefix>.*`` topic, beside its partitions in Kafka.

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
            [f"{prefix}."],
        ).fetchall()
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
        LayoutStatus(str(topic), int(used), counts.get(str(topic)) if known else None)
        for topic, used in rows
    ]
