"""The PostgreSQL event store: eventsourcing's recorder plus idempotency keys.

The events table of eventsourcing's ``PostgresApplicationRecorder`` is also
the outbox: its ``notification_id`` is assigned under a table lock, so ids
follow commit order with no gaps a reader could pass over (see the library's
``_lock_table`` and docs/decisions/0001-outbox.md). We add one table, the
idempotency keys, written in the same transaction as the events. The tables
are migration 1's (cqrskit.adapters.postgres.migrations); the recorder
creates none.

Concurrent appends of one process are committed in groups (docs/decisions/
0006-group-commit.md): while one transaction holds the table lock, the
appends that arrive queue up, and the next transaction takes them all. Each
append keeps its own outcome; only the lock, the round trips and the WAL
flush are shared.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg_pool
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from eventsourcing.utils import get_topic
from psycopg import Connection, Cursor, Pipeline
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from cqrskit.adapters.postgres._client import connect, connection_options
from cqrskit.adapters.postgres._errors import first_line, unavailable
from cqrskit.adapters.postgres.migrations import LOCK_TIMEOUT
from cqrskit.adapters.postgres.schema import PostgresSchema
from cqrskit.errors import ConfigurationError, ServiceUnavailable
from cqrskit.eventstore._idempotency import IdempotencyRecord
from cqrskit.schema import Part
from cqrskit.settings import Settings

__all__ = ["PostgresEventRecorder", "PostgresEventStoreFactory"]


class PostgresEventRecorder(PostgresApplicationRecorder):
    """Stores events, the outbox order, and idempotency keys in PostgreSQL.

    ``insert_events(stored_events, idempotency=IdempotencyRecord(...))``
    records the key in the transaction that inserts the events; a key that
    already exists fails the append (and nothing of it is stored).
    """

    #: Most appends committed in one transaction.
    max_group_size = 500

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        base = events_table_name.removesuffix("_events")
        self.idempotency_table_name = f"{base}_idempotency"
        self.check_identifier_length(self.idempotency_table_name)
        table = Identifier(self.datastore.schema, self.idempotency_table_name)
        self._insert_keys = SQL(
            "INSERT INTO {table} (key, request_hash, command_type, aggregate_id, "
            "aggregate_version) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::uuid[], %s::bigint[]) "
            "ON CONFLICT (key) DO NOTHING RETURNING key"
        ).format(table=table)
        self._set_key_positions = SQL(
            "UPDATE {table} AS k SET position = v.position "
            "FROM unnest(%s::text[], %s::bigint[]) AS v(key, position) WHERE k.key = v.key"
        ).format(table=table)
        self._delete_keys = SQL("DELETE FROM {table} WHERE key = ANY(%s)").format(table=table)
        events = Identifier(self.datastore.schema, self.events_table_name)
        self._insert_events_or_skip = SQL(
            "INSERT INTO {events} (originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version, topic, state "
            "FROM unnest(%s::{event_type}[]) "
            "ON CONFLICT (originator_id, originator_version) DO NOTHING "
            "RETURNING notification_id, originator_id, originator_version"
        ).format(
            events=events,
            event_type=Identifier(self.datastore.schema, self.stored_event_type_name),
        )
        self._delete_events = SQL("DELETE FROM {events} WHERE notification_id = ANY(%s)").format(
            events=events
        )
        self._group = _GroupCommit(self._commit_group, self.max_group_size)
        self._select_key = SQL(
            "SELECT key, request_hash, command_type, aggregate_id, aggregate_version, position "
            "FROM {table} WHERE key = %s"
        ).format(table=table)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Append events in one transaction, grouped with concurrent appends.

        Appends that arrive while another group commits wait and then
        commit together: one table lock, one round trip, one WAL flush for
        all of them. Each append still succeeds or fails on its own: a
        version conflict or a taken idempotency key fails that append (with
        ``IntegrityError``) and none of the others. Not retried: when the
        connection drops after COMMIT was sent the outcome is unknown, and a
        blind retry could apply a command twice; a caller that sent an
        idempotency key can retry safely.
        """
        record: IdempotencyRecord | None = kwargs.get("idempotency")
        # Also with POSTGRES_ENABLE_DB_FUNCTIONS: every append takes the table
        # lock here, so no setting can make positions visible out of commit
        # order (the insert function of migration 1 locks too, for other callers).
        if not stored_events and record is None:
            return None
        return self._group.submit(_Append(stored_events, record))

    @property
    def group_commits(self) -> tuple[int, int]:
        """Transactions begun by this recorder's appends, and the appends they carried."""
        return self._group.transactions, self._group.appends

    @retry(
        retry=retry_if_exception_type((InterfaceError, OperationalError)),
        stop=stop_after_attempt(3),
        wait=wait_exponential_jitter(multiplier=0.1, max=1.0),
        reraise=True,
    )
    def select_events(self, originator_id: UUID | str, **kwargs: Any) -> Sequence[StoredEvent]:
        """Read one aggregate's events; retried (reads are safe to repeat)."""
        result: Sequence[StoredEvent] = _UNRETRIED_SELECT(self, originator_id, **kwargs)
        return result

    def _commit_group(self, group: Sequence[_Append]) -> None:
        """Commit ``group`` in one transaction; settle every append in it."""
        owners = _first_claims(group)
        with self.datastore.get_connection() as conn:
            failure: Exception | None = None
            with conn.pipeline() as pipeline:
                try:
                    # Any error rolls the whole transaction back; it is
                    # re-raised after the pipeline closes (psycopg warns
                    # about a pipeline left by an exception).
                    with conn.transaction():
                        self._append_group(conn, pipeline, group, owners)
                except Exception as exc:
                    failure = exc
            if failure is not None:
                raise failure

    def _append_group(
        self,
        conn: Connection[DictRow],
        pipeline: Pipeline,
        group: Sequence[_Append],
        owners: dict[str, _Append],
    ) -> None:
        # One round trip for all of it (pipeline mode), then one for the
        # clean-up and COMMIT. Idempotency keys go first, before the table
        # lock: a twin with the same key in another transaction is waited for
        # on the key's index while this one holds nothing, so the two never
        # deadlock; keys in sorted order, so two groups wait in one order.
        records = [r for _, a in sorted(owners.items()) if (r := a.record) is not None]
        appends = [a for a in group if not a.settled]
        events = [e for a in appends for e in a.events]
        with conn.cursor() as keys, conn.cursor() as rows, conn.cursor() as other:
            if records:
                keys.execute(self._insert_keys, _key_columns(records), prepare=True)
            if events:
                self._lock_table(other)
                self._notify_channel(other)
                pg_events = [
                    self.construct_pg_stored_event(
                        e.originator_id, e.originator_version, e.topic, e.state
                    )
                    for e in events
                ]
                rows.execute(self._insert_events_or_skip, (pg_events,), prepare=True)
            pipeline.sync()
            recorded = {row["key"] for row in keys.fetchall()} if records else set()
            inserted = {
                (str(row["originator_id"]), row["originator_version"]): row["notification_id"]
                for row in (rows.fetchall() if events else ())
            }
            self._settle(other, appends, recorded, inserted)

    def _settle(
        self,
        curs: Cursor[DictRow],
        appends: Sequence[_Append],
        recorded: set[str],
        inserted: dict[tuple[str, int], int],
    ) -> None:
        """Give each append its ids or its error; undo what the failed ones wrote."""
        undo_ids: list[int] = []
        undo_keys: list[str] = []
        positions: list[tuple[str, int]] = []
        for append in appends:
            ids = [
                inserted.get((str(e.originator_id), e.originator_version)) for e in append.events
            ]
            key = append.record.key if append.record is not None else None
            if key is not None and key not in recorded:
                append.fail(IntegrityError(f"idempotency key {key!r} taken"))
            elif None in ids:
                # Another writer took a version first.
                missing = next(e for e, i in zip(append.events, ids, strict=True) if i is None)
                append.fail(IntegrityError(_conflict(missing)))
                if key is not None:
                    undo_keys.append(key)
            else:
                append.ids = [i for i in ids if i is not None]
                if key is not None and append.ids:
                    positions.append((key, max(append.ids)))
                continue
            undo_ids += [i for i in ids if i is not None]
        if undo_ids:
            curs.execute(self._delete_events, (undo_ids,), prepare=True)
        if undo_keys:
            curs.execute(self._delete_keys, (undo_keys,), prepare=True)
        if positions:
            curs.execute(
                self._set_key_positions,
                ([k for k, _ in positions], [p for _, p in positions]),
                prepare=True,
            )

    def select_idempotency(self, key: str) -> IdempotencyRecord | None:
        """The recorded outcome for ``key``, or None if it was never used."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_key, (key,), prepare=True)
            row = curs.fetchone()
        if row is None:
            return None
        return IdempotencyRecord(
            key=row["key"],
            request_hash=row["request_hash"],
            command_type=row["command_type"],
            aggregate_id=UUID(str(row["aggregate_id"])),
            aggregate_version=row["aggregate_version"],
            position=row["position"],
        )


class _Append:
    """One caller's events (and key), waiting for the group that commits them."""

    def __init__(self, events: Sequence[StoredEvent], record: IdempotencyRecord | None):
        self.events = events
        self.record = record
        self.ids: list[int] | None = None
        self.error: Exception | None = None
        self.lead = False
        self.woken = threading.Event()

    @property
    def settled(self) -> bool:
        return self.ids is not None or self.error is not None

    def fail(self, error: Exception) -> None:
        self.error = error


def _conflict(event: StoredEvent) -> str:
    return (
        f"version {event.originator_version} of {event.originator_id} "
        "was appended by another writer first"
    )


def _key_columns(records: Sequence[IdempotencyRecord]) -> tuple[list[Any], ...]:
    return (
        [r.key for r in records],
        [r.request_hash for r in records],
        [r.command_type for r in records],
        [r.aggregate_id for r in records],
        [r.aggregate_version for r in records],
    )


def _first_claims(group: Sequence[_Append]) -> dict[str, _Append]:
    """Fail the appends of ``group`` that an earlier one of it already claims.

    Two appends of one group at the same version of an aggregate, or with
    the same idempotency key: the first wins, as if committed first. Returns
    the remaining appends with a key, by key.
    """
    owners: dict[str, _Append] = {}
    versions: set[tuple[str, int]] = set()
    for append in group:
        key = append.record.key if append.record else None
        mine = [(str(e.originator_id), e.originator_version) for e in append.events]
        if key is not None and key in owners:
            append.fail(IntegrityError(f"idempotency key {key!r} taken"))
        elif clash := next(
            (e for e, v in zip(append.events, mine, strict=True) if v in versions), None
        ):
            append.fail(IntegrityError(_conflict(clash)))
        else:
            versions.update(mine)
            if key is not None:
                owners[key] = append
    return owners


def _own_copy(error: Exception) -> Exception:
    """A fresh exception like ``error`` for one thread (one error may fail a group)."""
    try:
        return type(error)(str(error))
    except TypeError:
        return error


class _GroupCommit:
    """Leader and followers: one thread commits a group, the others wait.

    An append that finds no commit running leads: it commits everything
    queued (its own append first). Appends that arrive meanwhile queue; when
    the leader is done it wakes the oldest of them to lead the next group.
    A lone writer therefore commits at once, and many writers share their
    commits without any timer.
    """

    def __init__(self, commit: Any, max_size: int):
        self._commit = commit
        self._max = max_size
        self._mutex = threading.Lock()
        self._queue: list[_Append] = []
        self._leading = False
        self.transactions = 0
        self.appends = 0

    def submit(self, append: _Append) -> list[int]:
        with self._mutex:
            self._queue.append(append)
            append.lead = not self._leading
            self._leading = True
        while not append.lead:
            append.woken.wait()
            append.woken.clear()
            if append.settled:
                break
        if not append.settled:
            self._lead()
        if append.error is not None:
            raise _own_copy(append.error) from append.error
        assert append.ids is not None
        return append.ids

    def _lead(self) -> None:
        with self._mutex:
            group = self._queue[: self._max]
            del self._queue[: self._max]
            self.transactions += 1
            self.appends += len(group)
        try:
            self._commit(group)
        except Exception as exc:  # handed to every append of the group
            for append in group:
                if append.error is None:
                    append.ids = None
                    append.error = exc
        finally:
            with self._mutex:
                following = self._queue[0] if self._queue else None
                if following is None:
                    self._leading = False
                else:
                    following.lead = True
            for append in group:
                if not append.settled:  # pragma: no cover - a commit always settles
                    append.error = RuntimeError("the group commit left an append unsettled")
                append.woken.set()
            if following is not None:
                following.woken.set()


_UNRETRIED_SELECT = inspect.unwrap(PostgresApplicationRecorder.select_events)


def _timed_out_in_pool(exc: BaseException | None) -> bool:
    """Whether ``exc`` is, or was raised from, the pool's time-out (the library wraps it)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, psycopg_pool.PoolTimeout):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class PostgresEventStoreFactory(PostgresFactory):
    """eventsourcing's PostgreSQL factory, building :class:`PostgresEventRecorder`."""

    application_recorder_class = PostgresEventRecorder

    @classmethod
    def environment(cls, settings: Settings) -> dict[str, str]:
        """The eventsourcing environment of this factory on ``settings``' database."""
        params = conninfo_to_dict(settings.postgres_dsn)
        return {
            "PERSISTENCE_MODULE": get_topic(cls),
            "POSTGRES_DBNAME": str(params.get("dbname", "")),
            "POSTGRES_HOST": str(params.get("host", "localhost")),
            "POSTGRES_PORT": str(params.get("port", 5432)),
            "POSTGRES_USER": str(params.get("user", "")),
            "POSTGRES_PASSWORD": str(params.get("password", "")),
            "POSTGRES_SCHEMA": settings.postgres_schema,
            "POSTGRES_CONNECT_TIMEOUT": str(max(1, round(settings.connect_timeout))),
            "POSTGRES_POOL_SIZE": str(settings.postgres_pool_size),
            "POSTGRES_MAX_OVERFLOW": "0",
            "POSTGRES_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
            # The tables are created by 'cqrskit db init', never at run time.
            "CREATE_TABLE": "false",
        }

    @classmethod
    def unavailable(cls, settings: Settings, exc: Exception) -> ServiceUnavailable:
        """The driver error ``exc`` as a ServiceUnavailable naming the database.

        The pool only says that no connection came in time; one connection
        of our own then says why (a refused login, an unknown database), so
        the message names the cause rather than the wait.
        """
        if _timed_out_in_pool(exc):
            try:
                connect(settings).close()
            except ServiceUnavailable as cause:
                return cause
        return unavailable(settings.postgres_address(), first_line(exc))

    def prepare(self, settings: Settings) -> None:
        """Give the pool's connections cqrskit's libpq options; check the schema is ready.

        Creates nothing: ``cqrskit db init`` does (decision 0022).

        Raises:
            ConfigurationError: ``CREATE_TABLE`` was asked for.
            SchemaNotReady: the tables are missing, behind or newer than the code.
            ServiceUnavailable: PostgreSQL cannot be reached.
        """
        # The library's pool takes no libpq parameters beyond the login;
        # it opens lazily, so its connections all get these.
        login = self.datastore.pool.kwargs
        assert isinstance(login, dict), "eventsourcing passes its pool a dict of parameters"
        login.update(connection_options(settings))
        if self.env_create_table():
            raise ConfigurationError(
                "CREATE_TABLE",
                self.env.get(self.CREATE_TABLE),
                "cqrskit applications create no table; run 'cqrskit db init' once instead",
            )
        parts: tuple[Part, ...] = (
            ("store", "snapshots") if self.is_snapshotting_enabled() else ("store",)
        )
        PostgresSchema(settings, self.env.name, parts).require()
