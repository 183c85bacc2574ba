"""Reading the whole store in commit order, as envelopes: for replays and verification."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from psycopg.sql import SQL, Identifier

from cqrskit.adapters import postgres as pg_backend
from cqrskit.envelope import Envelope, encode
from cqrskit.settings import Settings
from cqrskit.topology import Topology

__all__ = ["PostgresStoredEvents", "read_envelopes", "store_head"]


def read_envelopes(
    settings: Settings,
    application_name: str,
    *,
    after: int = 0,
    upto: int | None = None,
    page_size: int = 5000,
) -> Iterator[Envelope]:
    """Every stored event after position ``after`` (up to ``upto``), in position order.

    Pages through the events table with keyset queries, so memory stays flat
    however large the store is.

    Raises:
        ServiceUnavailable: PostgreSQL cannot be reached.
        PermanentError: the event store is not in the schema (``cqrskit db init``).
    """
    events = Identifier(
        settings.postgres_schema, Topology.of(settings, application_name).events_table
    )
    query = SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state FROM {events} "
        "WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
    ).format(events=events)
    ceiling = upto if upto is not None else 2**63 - 1
    with pg_backend.connect(settings) as conn:
        while True:
            with _store_of(settings, application_name):
                rows = conn.execute(query, [after, ceiling, page_size], prepare=True).fetchall()
            for position, aggregate_id, version, topic, state in rows:
                value, *_ = encode(
                    position=position,
                    aggregate_id=aggregate_id,
                    aggregate_version=version,
                    topic=topic,
                    state=bytes(state),
                )
                yield Envelope.decode(value)
            if len(rows) < page_size:
                return
            after = int(rows[-1][0])


def store_head(settings: Settings, application_name: str) -> int:
    """The position of the last stored event (0 if none).

    Raises:
        PermanentError: the event store is not in the schema (``cqrskit db init``).
    """
    events = Identifier(
        settings.postgres_schema, Topology.of(settings, application_name).events_table
    )
    with pg_backend.connect(settings) as conn, _store_of(settings, application_name):
        row = conn.execute(
            SQL("SELECT coalesce(max(notification_id), 0) FROM {events}").format(events=events)
        ).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def _store_of(settings: Settings, application_name: str) -> Iterator[None]:
    """A store that was never set up is named, with what to run."""
    try:
        yield
    except pg_backend.MISSING as exc:
        raise pg_backend.not_set_up(application_name, settings.postgres_schema) from exc


class PostgresStoredEvents:
    """The :class:`~cqrskit.projections.StoredEvents` of one application in PostgreSQL."""

    def __init__(self, settings: Settings, application_name: str):
        self.settings = settings
        self.application_name = application_name

    def head(self) -> int:
        """The position of the last stored event (0 if none)."""
        return store_head(self.settings, self.application_name)

    def envelopes(self, *, after: int = 0, upto: int | None = None) -> Iterator[Envelope]:
        """Every event after ``after`` up to ``upto``, in position order, page by page."""
        return read_envelopes(self.settings, self.application_name, after=after, upto=upto)
