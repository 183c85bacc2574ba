"""Process-manager instances in PostgreSQL: six tables of the event store's schema.

The tables are the schema's ``sagas`` part, created by ``cqrskit db init``
(cqrskit.adapters.postgres.migrations), never by the store.

Every reaction is recorded in one transaction: the instance's new state
(guarded by its version), the history entry, the deadlines it set or
cancelled, the id of the event it handled (unique: a second delivery finds
it and records nothing) and the Kafka position after that event. The
server being away is re-raised as ServiceUnavailable by
``cqrskit.adapters.postgres._errors.translated``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from cqrskit.adapters.postgres._client import connect
from cqrskit.adapters.postgres._errors import translated
from cqrskit.errors import SagaConflict
from cqrskit.sagas import HistoryEntry, PlannedReaction, SagaInstance, StepRecord
from cqrskit.sagas._records import Status
from cqrskit.settings import Settings
from cqrskit.topology import Topology

__all__ = ["PostgresSagaStore"]


class PostgresSagaStore:
    """Instances in six tables of the event store's schema, ``<app>_saga_*``."""

    def __init__(self, settings: Settings, application_name: str):
        self.settings = settings
        topology = Topology.of(settings, application_name)
        schema = settings.postgres_schema
        self.instances_table = Identifier(schema, topology.saga_table("instances"))
        self.history_table = Identifier(schema, topology.saga_table("history"))
        self.deadlines_table = Identifier(schema, topology.saga_table("deadlines"))
        self.handled_table = Identifier(schema, topology.saga_table("handled"))
        self.positions_table = Identifier(schema, topology.saga_table("positions"))
        self.pending_table = Identifier(schema, topology.saga_table("pending"))

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        with (
            translated(self.settings.postgres_address()),
            connect(self.settings, autocommit=False) as conn,
        ):
            yield conn

    def load(self, saga: str, instance_id: str) -> SagaInstance | None:
        with self._transaction() as conn:
            row = conn.execute(
                SQL(
                    "SELECT status, state, compensations, version, started_at, updated_at "
                    "FROM {t} WHERE saga = %s AND instance_id = %s"
                ).format(t=self.instances_table),
                [saga, instance_id],
            ).fetchone()
        if row is None:
            return None
        return SagaInstance(saga, instance_id, row[0], row[1], row[2], row[3], row[4], row[5])

    def handled(self, saga: str, event_id: str) -> bool:
        with self._transaction() as conn:
            row = conn.execute(
                SQL("SELECT 1 FROM {t} WHERE saga = %s AND event_id = %s").format(
                    t=self.handled_table
                ),
                [saga, event_id],
            ).fetchone()
        return row is not None

    def record(self, step: StepRecord) -> bool:
        with self._transaction() as conn:
            if step.event_id is not None:
                inserted = conn.execute(
                    SQL(
                        "INSERT INTO {t} (saga, event_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
                    ).format(t=self.handled_table),
                    [step.saga, step.event_id],
                ).rowcount
                if not inserted:
                    # Handled already: a plan of that event left pending (by a
                    # runner that raced the one that recorded it) is done too.
                    conn.rollback()
                    conn.execute(
                        SQL(
                            "DELETE FROM {t} WHERE saga = %s AND instance_id = %s "
                            "AND plan->>'event_id' = %s"
                        ).format(t=self.pending_table),
                        [step.saga, step.instance_id, step.event_id],
                    )
                    return False
            self._write_instance(conn, step)
            conn.execute(
                SQL("DELETE FROM {t} WHERE saga = %s AND instance_id = %s").format(
                    t=self.pending_table
                ),
                [step.saga, step.instance_id],
            )
            for entry in step.history:
                conn.execute(
                    SQL(
                        "INSERT INTO {t} (saga, instance_id, at, kind, trigger, detail) "
                        "VALUES (%s, %s, %s, %s, %s, %s)"
                    ).format(t=self.history_table),
                    [
                        step.saga,
                        step.instance_id,
                        entry.at,
                        entry.kind,
                        entry.trigger,
                        Jsonb(entry.detail),
                    ],
                )
            self._write_deadlines(conn, step)
            if step.stream is not None and step.next_offset is not None:
                self._write_position(conn, step.saga, step.stream, step.next_offset)
        return True

    def _write_instance(self, conn: psycopg.Connection[tuple[Any, ...]], step: StepRecord) -> None:
        values = [Jsonb(step.state), Jsonb(step.compensations), step.status]
        if step.expected_version == 0:
            inserted = conn.execute(
                SQL(
                    "INSERT INTO {t} (state, compensations, status, saga, instance_id, version) "
                    "VALUES (%s, %s, %s, %s, %s, 1) ON CONFLICT DO NOTHING"
                ).format(t=self.instances_table),
                [*values, step.saga, step.instance_id],
            ).rowcount
        else:
            inserted = conn.execute(
                SQL(
                    "UPDATE {t} SET state = %s, compensations = %s, status = %s, "
                    "version = version + 1, updated_at = now() "
                    "WHERE saga = %s AND instance_id = %s AND version = %s"
                ).format(t=self.instances_table),
                [*values, step.saga, step.instance_id, step.expected_version],
            ).rowcount
        if not inserted:
            conn.rollback()
            raise SagaConflict(f"saga {step.saga} instance {step.instance_id} moved on")

    def _write_deadlines(self, conn: psycopg.Connection[tuple[Any, ...]], step: StepRecord) -> None:
        where = SQL("WHERE saga = %s AND instance_id = %s")
        if step.cancel_all:
            conn.execute(
                SQL("DELETE FROM {t} ").format(t=self.deadlines_table) + where,
                [step.saga, step.instance_id],
            )
        for name in step.cancelled:
            conn.execute(
                SQL("DELETE FROM {t} ").format(t=self.deadlines_table)
                + where
                + SQL(" AND name = %s"),
                [step.saga, step.instance_id, name],
            )
        for name, seconds in step.deadlines.items():
            conn.execute(
                SQL(
                    "INSERT INTO {t} (saga, instance_id, name, due_at) "
                    "VALUES (%s, %s, %s, now() + make_interval(secs => %s)) "
                    "ON CONFLICT (saga, instance_id, name) DO UPDATE SET due_at = excluded.due_at"
                ).format(t=self.deadlines_table),
                [step.saga, step.instance_id, name, seconds],
            )

    def _write_position(
        self, conn: psycopg.Connection[tuple[Any, ...]], saga: str, stream: str, next_offset: int
    ) -> None:
        conn.execute(
            SQL(
                "INSERT INTO {t} (saga, stream, next_offset) VALUES (%s, %s, %s) "
                "ON CONFLICT (saga, stream) DO UPDATE "
                "SET next_offset = greatest({t}.next_offset, excluded.next_offset)"
            ).format(t=self.positions_table),
            [saga, stream, next_offset],
        )

    def plan(self, planned: PlannedReaction) -> PlannedReaction:
        with self._transaction() as conn:
            # Only against the version the reaction was decided on: a plan for
            # a version that moved on could never be recorded, and would be
            # carried out again on every later event.
            inserted = conn.execute(
                SQL(
                    "INSERT INTO {pending} (saga, instance_id, plan) SELECT %s, %s, %s "
                    "WHERE coalesce((SELECT version FROM {instances} WHERE saga = %s AND "
                    "instance_id = %s FOR SHARE), 0) = %s ON CONFLICT DO NOTHING"
                ).format(pending=self.pending_table, instances=self.instances_table),
                [
                    planned.saga,
                    planned.instance_id,
                    Jsonb(planned.as_json()),
                    planned.saga,
                    planned.instance_id,
                    planned.expected_version,
                ],
            ).rowcount
            if inserted:
                return planned
        found = self.pending(planned.saga, planned.instance_id)
        if found is None or found.expected_version != planned.expected_version:
            raise SagaConflict(f"saga {planned.saga} instance {planned.instance_id} moved on")
        return found

    def pending(self, saga: str, instance_id: str) -> PlannedReaction | None:
        with self._transaction() as conn:
            row = conn.execute(
                SQL("SELECT plan FROM {t} WHERE saga = %s AND instance_id = %s").format(
                    t=self.pending_table
                ),
                [saga, instance_id],
            ).fetchone()
        return None if row is None else PlannedReaction(**row[0])

    def record_position(self, saga: str, stream: str, next_offset: int) -> None:
        with self._transaction() as conn:
            self._write_position(conn, saga, stream, next_offset)

    def positions(self, saga: str) -> dict[str, int]:
        with self._transaction() as conn:
            rows = conn.execute(
                SQL("SELECT stream, next_offset FROM {t} WHERE saga = %s").format(
                    t=self.positions_table
                ),
                [saga],
            ).fetchall()
        return {str(stream): int(offset) for stream, offset in rows}

    def due(self, saga: str, limit: int = 100) -> list[tuple[str, str]]:
        with self._transaction() as conn:
            rows = conn.execute(
                SQL(
                    "SELECT instance_id, name FROM {t} WHERE saga = %s AND due_at <= now() "
                    "ORDER BY due_at LIMIT %s"
                ).format(t=self.deadlines_table),
                [saga, limit],
            ).fetchall()
        return [(str(i), str(n)) for i, n in rows]

    def instances(
        self, saga: str, status: Status | None = None, limit: int = 1000
    ) -> list[SagaInstance]:
        query = SQL(
            "SELECT instance_id, status, state, compensations, version, started_at, updated_at "
            "FROM {t} WHERE saga = %s AND (%s::text IS NULL OR status = %s) "
            "ORDER BY started_at DESC LIMIT %s"
        ).format(t=self.instances_table)
        with self._transaction() as conn:
            rows = conn.execute(query, [saga, status, status, limit]).fetchall()
        return [SagaInstance(saga, *row) for row in rows]

    def history(self, saga: str, instance_id: str) -> list[HistoryEntry]:
        with self._transaction() as conn:
            rows = conn.execute(
                SQL(
                    "SELECT at, kind, trigger, detail FROM {t} "
                    "WHERE saga = %s AND instance_id = %s ORDER BY seq"
                ).format(t=self.history_table),
                [saga, instance_id],
            ).fetchall()
        return [HistoryEntry(*row) for row in rows]

    def deadlines(self, saga: str, instance_id: str) -> dict[str, datetime]:
        with self._transaction() as conn:
            rows = conn.execute(
                SQL("SELECT name, due_at FROM {t} WHERE saga = %s AND instance_id = %s").format(
                    t=self.deadlines_table
                ),
                [saga, instance_id],
            ).fetchall()
        return {str(name): due for name, due in rows}
