"""The PostgreSQL event store: eventsourcing's recorder plus idempotency keys.

The events table of eventsourcing's ``PostgresApplicationRecorder`` is also
the outbox: its ``notification_id`` is assigned under a table lock, so ids
follow commit order with no gaps a reader could pass over (see the library's
``_lock_table`` and docs/decisions/0001-outbox.md). We add one table, the
idempotency keys, written in the same transaction as the events.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from cqrskit.eventstore._idempotency import IdempotencyRecord

__all__ = ["PostgresEventRecorder", "PostgresEventStoreFactory"]


class PostgresEventRecorder(PostgresApplicationRecorder):
    """Stores events, the outbox order, and idempotency keys in PostgreSQL.

    ``insert_events(stored_events, idempotency=IdempotencyRecord(...))``
    records the key in the transaction that inserts the events; a key that
    already exists makes the whole transaction fail (and nothing is stored).
    """

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        base = events_table_name.removesuffix("_events")
        self.idempotency_table_name = f"{base}_idempotency"
        self.check_identifier_length(self.idempotency_table_name)
        table = Identifier(self.datastore.schema, self.idempotency_table_name)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {table} ("
                "key text PRIMARY KEY, "
                "request_hash text NOT NULL, "
                "command_type text NOT NULL, "
                "aggregate_id uuid NOT NULL, "
                "aggregate_version bigint NOT NULL, "
                "position bigint, "
                "recorded_at timestamptz NOT NULL DEFAULT now())"
            ).format(table=table)
        )
        self._insert_key = SQL(
            "INSERT INTO {table} (key, request_hash, command_type, aggregate_id, "
            "aggregate_version) VALUES (%s, %s, %s, %s, %s)"
        ).format(table=table)
        self._set_key_position = SQL("UPDATE {table} SET position = %s WHERE key = %s").format(
            table=table
        )
        self._select_key = SQL(
            "SELECT key, request_hash, command_type, aggregate_id, aggregate_version, position "
            "FROM {table} WHERE key = %s"
        ).format(table=table)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Append events in one transaction; not retried here.

        The library retries a failed append up to ten times; but when the
        connection drops after COMMIT was sent, the outcome is unknown and a
        blind retry could apply a command twice. We raise instead; a caller
        that sent an idempotency key can retry safely.
        """
        result: Sequence[int] | None = _UNRETRIED_INSERT(self, stored_events, **kwargs)
        return result

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

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # Runs first in the appending transaction, before the table lock is
        # taken. The sync makes a reused key fail here, as a unique violation
        # (IntegrityError) that rolls the transaction back; a concurrent twin
        # with the same key waits on the key's unique index, not on the lock
        # that serialises all writers.
        super()._insert_events(curs, stored_events, **kwargs)
        record: IdempotencyRecord | None = kwargs.get("idempotency")
        if record is not None:
            curs.execute(
                self._insert_key,
                (
                    record.key,
                    record.request_hash,
                    record.command_type,
                    record.aggregate_id,
                    record.aggregate_version,
                ),
                prepare=True,
            )
            with curs.connection.pipeline() as pipeline:
                pipeline.sync()

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        record: IdempotencyRecord | None = kwargs.get("idempotency")
        if record is not None and ids:
            # Pipelined too: no round trip while the table lock is held.
            curs.execute(self._set_key_position, (max(ids), record.key), prepare=True)
        return ids

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


_UNRETRIED_INSERT = inspect.unwrap(PostgresApplicationRecorder.insert_events)
_UNRETRIED_SELECT = inspect.unwrap(PostgresApplicationRecorder.select_events)


class PostgresEventStoreFactory(PostgresFactory):
    """eventsourcing's PostgreSQL factory, building :class:`PostgresEventRecorder`."""

    application_recorder_class = PostgresEventRecorder
