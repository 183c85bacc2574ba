"""Where process-manager instances live: their state, history, deadlines and position.

Every reaction is recorded in one transaction: the instance's new state
(guarded by its version), the history entry, the deadlines it set or
cancelled, the id of the event it handled (unique: a second delivery finds
it and records nothing) and the Kafka position after that event.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import psycopg
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from cqrskit.adapters import postgres as pg_backend
from cqrskit.errors import SagaConflict
from cqrskit.settings import Settings
from cqrskit.topology import Topology

__all__ = [
    "HistoryEntry",
    "MemorySagaStore",
    "PlannedReaction",
    "PostgresSagaStore",
    "SagaInstance",
    "SagaStore",
    "StepRecord",
]

Status = Literal["running", "done", "failed"]


@dataclass(frozen=True)
class HistoryEntry:
    """One thing that happened to an instance."""

    at: datetime
    kind: str  # started | event | deadline | compensation | done | failed
    trigger: str
    detail: dict[str, Any]


@dataclass
class SagaInstance:
    """One running (or finished) workflow."""

    saga: str
    instance_id: str
    status: Status
    state: dict[str, Any]
    #: Commands that undo the completed steps, oldest first: {"type", "payload"}.
    compensations: list[dict[str, Any]]
    version: int
    started_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StepRecord:
    """Everything one reaction changes, written atomically."""

    saga: str
    instance_id: str
    expected_version: int
    status: Status
    state: dict[str, Any]
    compensations: list[dict[str, Any]]
    history: list[HistoryEntry]
    #: Deadlines set by this step: name -> seconds from now.
    deadlines: dict[str, float] = field(default_factory=dict)
    #: Deadlines cancelled (all of them when the instance ends).
    cancelled: frozenset[str] = frozenset()
    cancel_all: bool = False
    event_id: str | None = None
    stream: str | None = None
    next_offset: int | None = None


@dataclass(frozen=True)
class PlannedReaction:
    """A reaction decided but not yet recorded: what it will send, with which keys.

    Written before the first command is sent; a runner that finds one
    pending (its predecessor crashed mid-step) carries it out as planned,
    sending the recorded commands with their recorded keys, instead of
    running the reaction again (which may build other commands: ``uuid4()``,
    ``now()``). Plain JSON values throughout.
    """

    saga: str
    instance_id: str
    expected_version: int
    #: What caused it: ``kind`` (event | deadline), the event type or deadline
    #: name, and the key every command of the step is derived from.
    kind: str
    trigger: str
    trigger_key: str
    status: Status
    reason: str
    state: dict[str, Any]
    #: The instance's compensation stack, with this step's ``on_failure`` ones.
    compensations: list[dict[str, Any]]
    #: {"type", "payload", "key", "compensation"} per command, in order.
    commands: list[dict[str, Any]]
    deadlines: dict[str, float] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    event_id: str | None = None
    stream: str | None = None
    next_offset: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The plan as one JSON object."""
        return dict(vars(self))


class SagaStore(Protocol):
    """Storage of process-manager instances."""

    def load(self, saga: str, instance_id: str) -> SagaInstance | None:
        """The instance, or None."""
        ...

    def handled(self, saga: str, event_id: str) -> bool:
        """Whether the saga already recorded its reaction to ``event_id``."""
        ...

    def record(self, step: StepRecord) -> bool:
        """Write ``step`` atomically, and drop the instance's pending plan;
        False if its event was already handled.

        Raises:
            SagaConflict: the instance's version moved since it was loaded.
        """
        ...

    def plan(self, planned: PlannedReaction) -> PlannedReaction:
        """Record ``planned`` as the instance's pending reaction, unless one is
        pending already; return the pending one (``planned`` or the other).

        Raises:
            SagaConflict: the instance's version is no longer ``expected_version``.
        """
        ...

    def pending(self, saga: str, instance_id: str) -> PlannedReaction | None:
        """The instance's reaction planned and not yet recorded, if any."""
        ...

    def record_position(self, saga: str, stream: str, next_offset: int) -> None:
        """Remember a position reached without a reaction (an ignored event)."""
        ...

    def positions(self, saga: str) -> dict[str, int]:
        """Next Kafka offset per stream (``topic/partition``)."""
        ...

    def due(self, saga: str, limit: int = 100) -> list[tuple[str, str]]:
        """(instance id, deadline name) of deadlines due now."""
        ...

    def instances(
        self, saga: str, status: Status | None = None, limit: int = 1000
    ) -> list[SagaInstance]:
        """Instances, newest first."""
        ...

    def history(self, saga: str, instance_id: str) -> list[HistoryEntry]:
        """An instance's history, oldest first."""
        ...

    def deadlines(self, saga: str, instance_id: str) -> dict[str, datetime]:
        """An instance's pending deadlines."""
        ...


class MemorySagaStore:
    """The same contract in memory, for tests without services."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instances: dict[tuple[str, str], SagaInstance] = {}
        self._history: dict[tuple[str, str], list[HistoryEntry]] = {}
        self._deadlines: dict[tuple[str, str], dict[str, datetime]] = {}
        self._handled: set[tuple[str, str]] = set()
        self._positions: dict[tuple[str, str], int] = {}
        self._pending: dict[tuple[str, str], PlannedReaction] = {}

    def load(self, saga: str, instance_id: str) -> SagaInstance | None:
        with self._lock:
            found = self._instances.get((saga, instance_id))
            return None if found is None else SagaInstance(**vars(found))

    def handled(self, saga: str, event_id: str) -> bool:
        return (saga, event_id) in self._handled

    def record(self, step: StepRecord) -> bool:
        key = (step.saga, step.instance_id)
        now = datetime.now(UTC)
        with self._lock:
            if step.event_id is not None and (step.saga, step.event_id) in self._handled:
                pending = self._pending.get(key)
                if pending is not None and pending.event_id == step.event_id:
                    del self._pending[key]
                return False
            current = self._instances.get(key)
            if (current.version if current else 0) != step.expected_version:
                raise SagaConflict(f"saga {step.saga} instance {step.instance_id} moved on")
            self._instances[key] = SagaInstance(
                step.saga,
                step.instance_id,
                step.status,
                step.state,
                step.compensations,
                step.expected_version + 1,
                current.started_at if current else now,
                now,
            )
            self._history.setdefault(key, []).extend(step.history)
            deadlines = self._deadlines.setdefault(key, {})
            if step.cancel_all:
                deadlines.clear()
            for name in step.cancelled:
                deadlines.pop(name, None)
            for name, seconds in step.deadlines.items():
                deadlines[name] = now + timedelta(seconds=seconds)
            self._pending.pop(key, None)
            if step.event_id is not None:
                self._handled.add((step.saga, step.event_id))
            if step.stream is not None and step.next_offset is not None:
                position = (step.saga, step.stream)
                self._positions[position] = max(self._positions.get(position, 0), step.next_offset)
            return True

    def plan(self, planned: PlannedReaction) -> PlannedReaction:
        key = (planned.saga, planned.instance_id)
        with self._lock:
            current = self._instances.get(key)
            if (current.version if current else 0) != planned.expected_version:
                raise SagaConflict(f"saga {planned.saga} instance {planned.instance_id} moved on")
            return self._pending.setdefault(key, planned)

    def pending(self, saga: str, instance_id: str) -> PlannedReaction | None:
        with self._lock:
            return self._pending.get((saga, instance_id))

    def record_position(self, saga: str, stream: str, next_offset: int) -> None:
        with self._lock:
            self._positions[(saga, stream)] = max(
                self._positions.get((saga, stream), 0), next_offset
            )

    def positions(self, saga: str) -> dict[str, int]:
        return {stream: n for (s, stream), n in self._positions.items() if s == saga}

    def due(self, saga: str, limit: int = 100) -> list[tuple[str, str]]:
        now = datetime.now(UTC)
        with self._lock:
            found = [
                (instance, name)
                for (s, instance), deadlines in self._deadlines.items()
                if s == saga
                for name, due_at in deadlines.items()
                if due_at <= now
            ]
        return found[:limit]

    def instances(
        self, saga: str, status: Status | None = None, limit: int = 1000
    ) -> list[SagaInstance]:
        found = [
            i
            for (s, _), i in self._instances.items()
            if s == saga and (status is None or i.status == status)
        ]
        return sorted(found, key=lambda i: i.started_at, reverse=True)[:limit]

    def history(self, saga: str, instance_id: str) -> list[HistoryEntry]:
        return list(self._history.get((saga, instance_id), []))

    def deadlines(self, saga: str, instance_id: str) -> dict[str, datetime]:
        return dict(self._deadlines.get((saga, instance_id), {}))


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
        self._instances_name = topology.saga_table("instances")
        self._deadlines_name = topology.saga_table("deadlines")

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        with (
            pg_backend.translated(self.settings.postgres_address()),
            pg_backend.connect(self.settings, autocommit=False) as conn,
        ):
            yield conn

    def create_tables(self) -> None:
        """Create the tables if they are missing; idempotent."""
        statements = [
            "CREATE SCHEMA IF NOT EXISTS {schema}",
            "CREATE TABLE IF NOT EXISTS {instances} (saga text NOT NULL, instance_id text "
            "NOT NULL, status text NOT NULL, state jsonb NOT NULL, compensations jsonb NOT "
            "NULL, version integer NOT NULL, started_at timestamptz NOT NULL DEFAULT now(), "
            "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (saga, instance_id))",
            "CREATE INDEX IF NOT EXISTS {instances_status} ON {instances} (saga, status, "
            "started_at DESC)",
            "CREATE TABLE IF NOT EXISTS {history} (saga text NOT NULL, instance_id text NOT "
            "NULL, seq bigserial, at timestamptz NOT NULL, kind text NOT NULL, trigger text NOT "
            "NULL, detail jsonb NOT NULL, PRIMARY KEY (saga, instance_id, seq))",
            "CREATE TABLE IF NOT EXISTS {deadlines} (saga text NOT NULL, instance_id text NOT "
            "NULL, name text NOT NULL, due_at timestamptz NOT NULL, PRIMARY KEY (saga, "
            "instance_id, name))",
            "CREATE INDEX IF NOT EXISTS {deadlines_due} ON {deadlines} (saga, due_at)",
            "CREATE TABLE IF NOT EXISTS {handled} (saga text NOT NULL, event_id text NOT NULL, "
            "PRIMARY KEY (saga, event_id))",
            "CREATE TABLE IF NOT EXISTS {positions} (saga text NOT NULL, stream text NOT NULL, "
            "next_offset bigint NOT NULL, PRIMARY KEY (saga, stream))",
            "CREATE TABLE IF NOT EXISTS {pending} (saga text NOT NULL, instance_id text NOT "
            "NULL, plan jsonb NOT NULL, planned_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (saga, instance_id))",
        ]
        names = {
            "schema": Identifier(self.settings.postgres_schema),
            "instances": self.instances_table,
            "instances_status": Identifier(f"{self._instances_name}_status"),
            "history": self.history_table,
            "deadlines": self.deadlines_table,
            "deadlines_due": Identifier(f"{self._deadlines_name}_due"),
            "handled": self.handled_table,
            "positions": self.positions_table,
            "pending": self.pending_table,
        }
        with self._transaction() as conn:
            for statement in statements:
                conn.execute(SQL(statement).format(**names))

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
