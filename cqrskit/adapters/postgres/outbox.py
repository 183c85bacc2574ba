"""The relay's outbox in PostgreSQL: the events table read in commit order, with leadership.

Everything the active relay does in PostgreSQL goes through one connection:
the one holding the session-level advisory lock that makes it the leader.
PostgreSQL releases that lock the moment the session ends (a killed
process's socket closes), so a standby takes over within its polling
interval; and since the position is written on that same session, a relay
that lost its session cannot record a position any more.

The relay table keeps one row per (application, relay name): applications
sharing a schema share the table, never a position.

A leader that is alive but silent (paused, partitioned) keeps its session,
so the lock alone would keep it leading forever. It therefore also holds a
lease: the heartbeat in the relay's row, renewed at least once a second. A
standby that finds the heartbeat older than ``relay_lease`` ends the
leader's session with ``pg_terminate_backend``, which drops the lock, and
takes over (docs/decisions/0008-relay-lease-and-fencing.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
import psycopg
from psycopg.sql import SQL, Identifier

from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.postgres.layouts import PostgresTopicLayouts
from cqrskit.adapters.postgres.schema import PostgresSchema
from cqrskit.errors import AmbiguousRelayPosition, LostSession, PermanentError
from cqrskit.relay import BEFORE_FIRST, OutboxRow, RelayStatus
from cqrskit.settings import Settings
from cqrskit.topology import RELAY_TABLE, Topology

__all__ = ["PostgresOutbox", "read_status"]

# The application of the rows of a relay table from before positions were
# kept per application (the table was keyed by relay name alone).
_LEGACY_APPLICATION = ""

log = logging.getLogger("cqrskit.relay")

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _on_session(
    method: Callable[Concatenate[PostgresOutbox, _P], _R],
) -> Callable[Concatenate[PostgresOutbox, _P], _R]:
    """Run ``method`` with psycopg's errors translated (see :meth:`PostgresOutbox.translated`)."""

    def translating(self: PostgresOutbox, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.translated():
            return method(self, *args, **kwargs)

    translating.__doc__ = method.__doc__
    translating.__name__ = method.__name__
    return translating


class PostgresOutbox:
    """The events table read as an outbox, and the relay's position beside it.

    Implements :class:`cqrskit.relay.Outbox`. Every psycopg error is raised
    as cqrskit's: the session lost as :class:`~cqrskit.errors.LostSession`,
    a missing events table (or any other refusal) as
    :class:`~cqrskit.errors.PermanentError`.
    """

    def __init__(self, settings: Settings, application_name: str, relay_name: str = "default"):
        self.settings = settings
        self.application_name = application_name
        self.relay_name = relay_name
        self._row = SQL("application = %s AND name = %s")
        self._key = (application_name, relay_name)
        schema = settings.postgres_schema
        topology = Topology.of(settings, application_name)
        self.events = Identifier(schema, topology.events_table)
        self.table = Identifier(schema, RELAY_TABLE)
        self.channel = topology.events_table
        digest = hashlib.blake2b(
            f"cqrskit-relay:{schema}:{application_name}:{relay_name}".encode(), digest_size=8
        ).digest()
        self.lock_key = int.from_bytes(digest, "big", signed=True)
        # pg_locks shows a bigint advisory key as two oids: high and low 32 bits.
        unsigned = self.lock_key & 0xFFFF_FFFF_FFFF_FFFF
        self._lock_oids = (unsigned >> 32, unsigned & 0xFFFF_FFFF)
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._read_page = SQL(
            "SELECT notification_id, originator_id::text, originator_version, topic, state "
            "FROM {events} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(events=self.events)

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        """Re-raise psycopg's errors on the relay's session into cqrskit's tree.

        Raises:
            PermanentError: the events table does not exist (or another
                refusal retrying cannot change).
            LostSession: the session, and with it the leadership, is gone.
        """
        try:
            yield
        except pg_backend.MISSING as exc:
            raise pg_backend.not_set_up(
                self.application_name, self.settings.postgres_schema
            ) from exc
        except psycopg.OperationalError as exc:
            raise LostSession(str(exc).strip().splitlines()[-1]) from exc
        except psycopg.Error as exc:
            raise PermanentError(
                f"relay {self.relay_name!r} of {self.application_name!r}: "
                f"{pg_backend.first_line(exc)}"
            ) from exc

    # -- connection and leadership -------------------------------------------

    @_on_session
    def connect(self) -> None:
        """Open the session that leads, reads and records.

        Raises:
            ServiceUnavailable: PostgreSQL cannot be reached.
        """
        self.close()
        # A partitioned leader's calls must fail within its lease, so that it
        # notices it lost the lead instead of hanging for the kernel's 15 min.
        self._conn = pg_backend.connect(self.settings, tcp_user_timeout=self.settings.relay_lease)
        self.prepare()

    @property
    def conn(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed:
            raise psycopg.OperationalError("the relay's PostgreSQL session is closed")
        return self._conn

    def close(self) -> None:
        """End the session, and with it any leadership.

        The lock is released before the connection closes: the server frees a
        closed session's locks only once it notices, so a standby asking at
        once could still find it held.
        """
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("SELECT pg_advisory_unlock_all()")
            self._conn.close()
            self._conn = None

    @_on_session
    def prepare(self) -> None:
        """Check that the schema is ready, and make sure this relay's row exists.

        Creates no table (``cqrskit db init`` does). A row from before
        positions were kept per application is adopted when the schema
        holds one application's events (it can only be theirs). Safe when
        run concurrently.

        Raises:
            SchemaNotReady: the schema is missing, behind, or newer than the code.
            AmbiguousRelayPosition: such a row exists and the schema holds
                several applications' events; no row is changed.
        """
        PostgresSchema(self.settings, self.application_name, ("store",)).require(self.conn)
        with self.conn.transaction():
            self._claim_row()

    def _claim_row(self) -> None:
        """Make sure this relay's row exists: new, or adopted from a legacy row."""
        found = self.conn.execute(
            SQL("SELECT 1 FROM {table} WHERE {row}").format(table=self.table, row=self._row),
            self._key,
        ).fetchone()
        if found:
            return
        legacy = self.conn.execute(
            SQL("SELECT position FROM {table} WHERE {row}").format(table=self.table, row=self._row),
            [_LEGACY_APPLICATION, self.relay_name],
        ).fetchone()
        if legacy is not None:
            owners = self._applications_in_schema()
            if owners == [self.application_name.lower()]:
                self.conn.execute(
                    SQL("UPDATE {table} SET application = %s WHERE {row}").format(
                        table=self.table, row=self._row
                    ),
                    [self.application_name, _LEGACY_APPLICATION, self.relay_name],
                )
                log.info(
                    "relay %r of %r adopted the position %d recorded before positions "
                    "were kept per application",
                    self.relay_name,
                    self.application_name,
                    legacy[0],
                )
                return
            if len(owners) > 1:
                raise AmbiguousRelayPosition(
                    self.settings.postgres_schema, self.relay_name, int(legacy[0]), owners
                )
            # The schema holds one other application's events: the row is theirs.
        self.conn.execute(
            SQL(
                "INSERT INTO {table} (application, name) VALUES (%s, %s) "
                "ON CONFLICT (application, name) DO NOTHING"
            ).format(table=self.table),
            self._key,
        )

    def _applications_in_schema(self) -> list[str]:
        """The applications whose events tables are in the schema, sorted."""
        rows = self.conn.execute(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = %s AND column_name = 'notification_id' "
            "AND table_name LIKE '%%\\_events' ORDER BY table_name",
            [self.settings.postgres_schema],
        ).fetchall()
        return [str(r[0]).removesuffix("_events") for r in rows]

    @_on_session
    def try_lead(self, instance: str) -> bool:
        """Take leadership if no other session holds it; True if we lead now.

        The lock is taken, and the lease stamped with this session's backend
        pid, in one statement: a standby never sees the lock held by a
        session the row does not name yet (it would end a leader that had
        just taken over).
        """
        row = self.conn.execute(
            SQL(
                "UPDATE {table} SET instance = %s, leader_pid = pg_backend_pid(), "
                "heartbeat_at = now() WHERE {row} AND pg_try_advisory_lock(%s) RETURNING 1"
            ).format(table=self.table, row=self._row),
            [instance, *self._key, self.lock_key],
        ).fetchone()
        if row is None:
            return False
        self.conn.execute(SQL("LISTEN {0}").format(Identifier(self.channel)))
        return True

    @_on_session
    def end_silent_leader(self, lease: float) -> int | None:
        """End the leader's session if its lease expired; the backend pid ended, if any.

        Expired means: its heartbeat is older than ``lease`` seconds by the
        database's clock (no clock of the relays is compared), and the
        backend the row names still holds the leader's advisory lock. Ending
        the session drops the lock, and with it the old leader's power to
        record anything; waits up to 5 s for the backend to exit. Idempotent:
        once the session is gone there is nothing to end.

        Raises:
            PermanentError: this role may not end the leader's session (it
                needs the same role, or membership in ``pg_signal_backend``).
        """
        classid, objid = self._lock_oids
        try:
            row = self.conn.execute(
                SQL(
                    "SELECT r.leader_pid, pg_terminate_backend(r.leader_pid, 5000) "
                    "FROM {table} r JOIN pg_locks l ON l.pid = r.leader_pid "
                    "WHERE r.application = %s AND r.name = %s "
                    "AND r.heartbeat_at < now() - make_interval(secs => %s) "
                    "AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                    "AND l.classid::bigint = %s AND l.objid::bigint = %s "
                    "AND l.database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                ).format(table=self.table),
                [*self._key, lease, classid, objid],
            ).fetchone()
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PermanentError(
                f"relay {self.relay_name!r}: the leader's lease expired but this role may not "
                f"end its session: {str(exc).strip().splitlines()[0]}; run every relay as the "
                "same role, or grant pg_signal_backend to the relays' role"
            ) from exc
        return int(row[0]) if row is not None and row[1] else None

    # -- reading and recording -------------------------------------------------

    @_on_session
    def position(self) -> int:
        """The last position acknowledged by Kafka and recorded."""
        row = self.conn.execute(
            SQL("SELECT position FROM {table} WHERE {row}").format(table=self.table, row=self._row),
            self._key,
        ).fetchone()
        return int(row[0]) if row else BEFORE_FIRST

    @_on_session
    def read(self, after: int, limit: int) -> Sequence[OutboxRow]:
        """Up to ``limit`` events after ``after``, in commit order.

        Rows are (position, aggregate id as text, version, topic, state).
        Binary results and the id as text spare the relay a hex decode and
        two UUID conversions per event.
        """
        with self.conn.cursor(binary=True) as cursor:
            cursor.execute(self._read_page, [after, limit], prepare=True)
            return cursor.fetchall()

    @_on_session
    def record(self, position: int) -> bool:
        """Record ``position`` as published and renew the lease; False if we do not lead.

        Written on the leader's own session and only while the row names
        this session as the leader: a relay whose lease was taken over
        records nothing, even if its session were somehow still open.
        """
        cursor = self.conn.execute(
            SQL(
                "UPDATE {table} SET position = %s, heartbeat_at = now(), updated_at = now() "
                "WHERE {row} AND leader_pid = pg_backend_pid()"
            ).format(table=self.table, row=self._row),
            [position, *self._key],
            prepare=True,
        )
        return cursor.rowcount == 1

    @_on_session
    def heartbeat(self) -> bool:
        """Renew the lease: say the leader is alive; False if we do not lead."""
        cursor = self.conn.execute(
            SQL(
                "UPDATE {table} SET heartbeat_at = now() "
                "WHERE {row} AND leader_pid = pg_backend_pid()"
            ).format(table=self.table, row=self._row),
            self._key,
            prepare=True,
        )
        return cursor.rowcount == 1

    def record_error(self, error: str) -> None:
        """Keep the latest error for ``relay status``; best effort."""
        with contextlib.suppress(psycopg.Error):
            self.conn.execute(
                SQL("UPDATE {table} SET last_error = %s, last_error_at = now() WHERE {row}").format(
                    table=self.table, row=self._row
                ),
                [error[:2000], *self._key],
            )

    @_on_session
    def lag(self, position: int) -> tuple[int, int, float]:
        """(store head, events after ``position``, age in seconds of the oldest of them)."""
        row = self.conn.execute(
            SQL(
                "SELECT (SELECT coalesce(max(notification_id), 0) FROM {events}), "
                "(SELECT state FROM {events} WHERE notification_id > %s "
                "ORDER BY notification_id LIMIT 1)"
            ).format(events=self.events),
            [position],
            prepare=True,
        ).fetchone()
        head = int(row[0]) if row else 0
        seconds = 0.0
        if row is not None and row[1] is not None:
            stamp = orjson.loads(bytes(row[1])).get("timestamp")
            if stamp:
                age = datetime.now(UTC) - datetime.fromisoformat(stamp)
                seconds = max(0.0, age.total_seconds())
        return head, max(0, head - position), seconds

    @_on_session
    def wait_for_events(self, timeout: float) -> None:
        """Block until an append is notified or ``timeout`` passes."""
        for _ in self.conn.notifies(timeout=timeout, stop_after=1):
            pass

    def layouts(self) -> PostgresTopicLayouts:
        """The pinned layouts, on the leader's session, with its errors translated."""
        return PostgresTopicLayouts(self.conn, self.settings.postgres_schema, self.translated)


def read_status(
    settings: Settings, application_name: str, relay_name: str = "default"
) -> RelayStatus:
    """The relay's position and lag, read without taking part in leadership.

    Raises:
        ServiceUnavailable: PostgreSQL cannot be reached.
    """
    outbox = PostgresOutbox(settings, application_name, relay_name)
    with pg_backend.connect(settings) as conn:
        outbox._conn = conn
        outbox.prepare()
        row = conn.execute(
            SQL(
                "SELECT position, instance, heartbeat_at, last_error, last_error_at "
                "FROM {table} WHERE {row}"
            ).format(table=outbox.table, row=outbox._row),
            outbox._key,
        ).fetchone()
        assert row is not None
        position = int(row[0])
        head, lag_events, lag_seconds = outbox.lag(position)
        outbox._conn = None
    now = datetime.now(UTC)
    heartbeat_at = row[2]
    alive = heartbeat_at is not None and (
        (now - heartbeat_at).total_seconds() < settings.relay_lease
    )
    return RelayStatus(
        name=relay_name,
        application=application_name,
        position=position,
        head=head,
        lag_events=lag_events,
        lag_seconds=lag_seconds,
        active_instance=row[1] if alive else None,
        heartbeat_at=heartbeat_at,
        last_error=row[3],
        last_error_at=row[4],
    )
