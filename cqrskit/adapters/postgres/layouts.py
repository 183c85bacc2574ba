"""The pinned partition layouts of the relay's topics, kept in PostgreSQL.

Why the relay pins each topic's layout, and what a layout is: see
:mod:`cqrskit.relay._layout` and
docs/decisions/0009-guards-that-survive-repartitioning.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg.sql import SQL, Identifier

from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.postgres.schema import PostgresSchema
from cqrskit.errors import PermanentError, ServiceUnavailable
from cqrskit.relay import BEFORE_FIRST, LayoutStatus, TopicLayout
from cqrskit.settings import Settings
from cqrskit.topology import LAYOUT_TABLE, MOVES_TABLE, Topology

__all__ = ["PostgresTopicLayouts", "layout_status", "request_repartition"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _translating(
    method: Callable[Concatenate[PostgresTopicLayouts, _P], _R],
) -> Callable[Concatenate[PostgresTopicLayouts, _P], _R]:
    """Run ``method`` inside the layouts' ``translated`` context."""

    def translating(self: PostgresTopicLayouts, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.translated():
            return method(self, *args, **kwargs)

    translating.__doc__ = method.__doc__
    translating.__name__ = method.__name__
    return translating


class PostgresTopicLayouts:
    """The pinned layouts, read and written on the relay leader's session.

    Implements :class:`cqrskit.relay.TopicLayouts`.

    Rows are (topic, after position, partitions); a topic's first row is
    written when the relay first publishes to it, and never changes.
    """

    def __init__(
        self,
        conn: psycopg.Connection[tuple[Any, ...]],
        schema: str,
        translated: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ):
        self.conn = conn
        #: Wraps each call: the relay's outbox translates its session's errors.
        self.translated = translated
        self.table = Identifier(schema, LAYOUT_TABLE)
        self.moves = Identifier(schema, MOVES_TABLE)

    @_translating
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

    @_translating
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

    @_translating
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

    @_translating
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

    @_translating
    def pending_moves(self) -> dict[str, int]:
        """Requested moves: topic -> partitions."""
        rows = self.conn.execute(
            SQL("SELECT topic, partitions FROM {moves}").format(moves=self.moves)
        ).fetchall()
        return {str(topic): int(partitions) for topic, partitions in rows}

    @_translating
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


def layout_status(
    settings: Settings, application_name: str, in_kafka: Callable[[], dict[str, int]]
) -> list[LayoutStatus]:
    """The pinned layout of every topic of the application, beside its partitions in Kafka.

    ``in_kafka`` gives the partitions of each topic in the cluster now; it
    is asked only when there is a layout to compare.

    Raises:
        SchemaNotReady: the application's schema is not up to date.
        ServiceUnavailable: PostgreSQL cannot be reached (Kafka being away
            only leaves ``in_kafka`` unknown).
    """
    start = Topology.of(settings, application_name).topic_start
    with pg_backend.connect(settings) as conn:
        PostgresSchema(settings, application_name, ("store",)).require(conn)
        layouts = PostgresTopicLayouts(conn, settings.postgres_schema)
        rows = conn.execute(
            SQL(
                "SELECT DISTINCT ON (topic) topic, partitions FROM {table} "
                "WHERE starts_with(topic, %s) ORDER BY topic, after_position DESC"
            ).format(table=layouts.table),
            [start],
        ).fetchall()
        moves = layouts.pending_moves()
    counts: dict[str, int] = {}
    away = ""
    try:
        if rows:
            counts = in_kafka()
    except ServiceUnavailable as exc:
        counts, away = {}, str(exc)
    known = bool(counts)
    return [
        LayoutStatus(
            str(topic),
            int(used),
            counts.get(str(topic)) if known else None,
            moves.get(topic),
            away,
        )
        for topic, used in rows
    ]


def request_repartition(
    settings: Settings,
    application_name: str,
    topics: Sequence[str] = (),
    *,
    in_kafka: Callable[[], dict[str, int]],
) -> list[tuple[str, int, int]]:
    """Ask the leading relay to move topics onto every partition they have in Kafka.

    ``topics`` defaults to every topic of the application the relay publishes to.
    Returns (topic, partitions used now, partitions moved to) for each move
    requested; topics that use all their partitions already are left alone.
    Idempotent. The relay takes a move up once it has caught up with the
    store; ``relay status`` shows it pending until then.

    Raises:
        ServiceUnavailable: PostgreSQL or Kafka cannot be reached.
        PermanentError: a named topic has no recorded layout.
        SchemaNotReady: the application's schema is not up to date.
    """
    start = Topology.of(settings, application_name).topic_start
    counts = in_kafka()
    requested: list[tuple[str, int, int]] = []
    with pg_backend.connect(settings) as conn:
        PostgresSchema(settings, application_name, ("store",)).require(conn)
        layouts = PostgresTopicLayouts(conn, settings.postgres_schema)
        known = layouts.load_all(start)
        unknown = sorted(set(topics) - known.keys())
        if unknown:
            raise PermanentError(
                f"no recorded layout for {', '.join(unknown)}: the relay publishes to "
                f"{', '.join(sorted(known)) or 'no topic yet'}"
            )
        for topic in topics or sorted(known):
            partitions = counts.get(topic, 0)
            if partitions > known[topic].partitions:
                layouts.request_move(topic, partitions)
                requested.append((topic, known[topic].partitions, partitions))
    return requested
