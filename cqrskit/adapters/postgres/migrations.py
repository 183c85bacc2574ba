"""The migrations of an application's schema, in order, as the SQL they run.

Each migration says what it does to each part of the schema
(:mod:`cqrskit.schema`). Its text is fixed once released: a later change to
the schema is a new migration, never an edit of an old one, so every
database that applied migration N holds the same tables.

Every statement is idempotent (``IF NOT EXISTS``, ``CREATE OR REPLACE``, or a
``DO`` block that checks first): ``db init --sql`` prints every migration,
not knowing which the database has, and a DBA may apply it twice. Migration
1 also brings the tables of a cqrskit from before migrations were recorded
to this form (a relay table keyed by relay name alone gains its
application column).

Migration 1 mirrors what eventsourcing's PostgreSQL recorders create
(``PostgresApplicationRecorder`` for the events, ``PostgresAggregateRecorder``
for the snapshots); a test compares the two catalogs, so an upgrade of the
library that changes its tables is noticed
(tests/integration/eventstore/test_schema.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from psycopg.sql import SQL, Composed, Identifier

from cqrskit.schema import Part
from cqrskit.topology import LAYOUT_TABLE, MIGRATIONS_TABLE, MOVES_TABLE, RELAY_TABLE, Topology

__all__ = ["LOCK_TIMEOUT", "MIGRATIONS", "STORED_EVENT_TYPE", "Migration", "migrations_table"]

#: Seconds an append waits for the events table's lock (eventsourcing's POSTGRES_LOCK_TIMEOUT).
LOCK_TIMEOUT = 30
#: The composite type eventsourcing appends through (its ``stored_event_<id type>``).
STORED_EVENT_TYPE = "stored_event_uuid"
#: eventsourcing's insert function (``es_insert_events_<id type>``), replaced by one that locks.
_INSERT_FUNCTION = "es_insert_events_uuid"
#: The storage parameters eventsourcing gives its events and snapshots tables.
_AUTOVACUUM = (
    "WITH (autovacuum_enabled = true, autovacuum_vacuum_threshold = 100000000, "
    "autovacuum_vacuum_scale_factor = 0.5, autovacuum_analyze_threshold = 1000, "
    "autovacuum_analyze_scale_factor = 0.01)"
)

Statements = Callable[[Topology], list[Composed]]


@dataclass(frozen=True)
class Migration:
    """One step of the schema: a number, a name, and its statements per part."""

    number: int
    name: str
    parts: Mapping[Part, Statements]

    def statements(self, part: Part, topology: Topology) -> list[Composed]:
        """What this migration runs for ``part`` of ``topology``'s application (maybe nothing)."""
        build = self.parts.get(part)
        return build(topology) if build is not None else []


def migrations_table(topology: Topology) -> list[Composed]:
    """The table that records the migrations applied (created before any of them)."""
    return [
        SQL(
            "CREATE TABLE IF NOT EXISTS {table} ("
            "application text NOT NULL, "
            "part text NOT NULL, "
            "number integer NOT NULL, "
            "name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now(), "
            "cqrskit_version text NOT NULL, "
            "PRIMARY KEY (application, part, number))"
        ).format(table=Identifier(topology.schema, MIGRATIONS_TABLE))
    ]


def _store(t: Topology) -> list[Composed]:
    """The events (eventsourcing's table, type and index), idempotency keys, the relay's tables."""
    schema = Identifier(t.schema)
    events = Identifier(t.schema, t.events_table)
    relay = Identifier(t.schema, RELAY_TABLE)
    return [
        SQL(
            "CREATE TABLE IF NOT EXISTS {events} ("
            "originator_id uuid NOT NULL, "
            "originator_version bigint NOT NULL, "
            "topic text, "
            "state bytea, "
            "notification_id bigserial, "
            "PRIMARY KEY (originator_id, originator_version)) "
        ).format(events=events)
        + SQL(_AUTOVACUUM),
        # CREATE TYPE has no IF NOT EXISTS.
        SQL(
            "DO $do$ BEGIN CREATE TYPE {type} AS (originator_id uuid, "
            "originator_version bigint, topic text, state bytea); "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $do$"
        ).format(type=Identifier(t.schema, STORED_EVENT_TYPE)),
        SQL("CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {events} (notification_id ASC)").format(
            index=Identifier(f"{t.events_table}_notification_id_idx"), events=events
        ),
        # eventsourcing's insert function, taking the table lock as every
        # append must. With POSTGRES_ENABLE_DB_FUNCTIONS the library appends
        # through it without the lock: a later position then commits, and is
        # read by the relay, while an earlier one is still open, and the relay
        # passes over the earlier for good. cqrskit's recorder never calls it,
        # but another process (an older cqrskit, the library's own recorder)
        # may; this one locks the table as ``_lock_table`` does, so its
        # appends also commit in position order.
        SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{function}(events {schema}.{type}[]) "
            "RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$ BEGIN "
            "SET LOCAL lock_timeout = '{lock_timeout}s'; "
            "LOCK TABLE {events} IN EXCLUSIVE MODE; "
            "NOTIFY {channel}; "
            "RETURN QUERY INSERT INTO {events} "
            "(originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version, topic, state FROM unnest(events) "
            "RETURNING notification_id; "
            "END; $BODY$"
        ).format(
            schema=schema,
            function=Identifier(_INSERT_FUNCTION),
            type=Identifier(STORED_EVENT_TYPE),
            lock_timeout=SQL(str(LOCK_TIMEOUT)),
            events=events,
            channel=Identifier(t.events_table),
        ),
        SQL(
            "CREATE TABLE IF NOT EXISTS {table} ("
            "key text PRIMARY KEY, "
            "request_hash text NOT NULL, "
            "command_type text NOT NULL, "
            "aggregate_id uuid NOT NULL, "
            "aggregate_version bigint NOT NULL, "
            "position bigint, "
            "recorded_at timestamptz NOT NULL DEFAULT now())"
        ).format(table=Identifier(t.schema, t.idempotency_table)),
        SQL(
            "CREATE TABLE IF NOT EXISTS {relay} ("
            "application text NOT NULL, "
            "name text NOT NULL, "
            "position bigint NOT NULL DEFAULT 0, "
            "instance text, "
            "heartbeat_at timestamptz, "
            "last_error text, "
            "last_error_at timestamptz, "
            "updated_at timestamptz NOT NULL DEFAULT now(), "
            "leader_pid integer, "
            "PRIMARY KEY (application, name))"
        ).format(relay=relay),
        # A relay table from before positions were kept per application: its
        # rows become legacy rows (application ''), which a relay adopts
        # when it can only be theirs (PostgresOutbox._claim_row).
        SQL(
            "DO $do$ DECLARE pkey name; BEGIN "
            "IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
            "{schema_name} AND table_name = {relay_name} AND column_name = 'application') THEN "
            "ALTER TABLE {relay} ADD COLUMN application text NOT NULL DEFAULT ''; "
            "ALTER TABLE {relay} ALTER COLUMN application DROP DEFAULT; "
            "SELECT conname INTO pkey FROM pg_constraint "
            "WHERE conrelid = {relay_regclass}::regclass AND contype = 'p'; "
            "IF pkey IS NOT NULL THEN "
            "EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', {relay_regclass}, pkey); "
            "END IF; "
            "ALTER TABLE {relay} ADD PRIMARY KEY (application, name); "
            "END IF; END $do$"
        ).format(
            schema_name=t.schema,
            relay_name=RELAY_TABLE,
            relay=relay,
            relay_regclass=relay.as_string(),
        ),
        SQL("ALTER TABLE {relay} ADD COLUMN IF NOT EXISTS leader_pid integer").format(relay=relay),
        SQL(
            "CREATE TABLE IF NOT EXISTS {table} ("
            "topic text NOT NULL, "
            "after_position bigint NOT NULL, "
            "partitions integer NOT NULL CHECK (partitions > 0), "
            "recorded_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (topic, after_position))"
        ).format(table=Identifier(t.schema, LAYOUT_TABLE)),
        SQL(
            "CREATE TABLE IF NOT EXISTS {table} ("
            "topic text PRIMARY KEY, "
            "partitions integer NOT NULL CHECK (partitions > 0), "
            "requested_at timestamptz NOT NULL DEFAULT now())"
        ).format(table=Identifier(t.schema, MOVES_TABLE)),
    ]


def _snapshots(t: Topology) -> list[Composed]:
    """eventsourcing's snapshots table (its aggregate recorder's, purpose "snapshots")."""
    return [
        SQL(
            "CREATE TABLE IF NOT EXISTS {table} ("
            "originator_id uuid NOT NULL, "
            "originator_version bigint NOT NULL, "
            "topic text, "
            "state bytea, "
            "PRIMARY KEY (originator_id, originator_version)) "
        ).format(table=Identifier(t.schema, t.snapshots_table))
        + SQL(_AUTOVACUUM),
    ]


def _sagas(t: Topology) -> list[Composed]:
    """The process managers' six tables (cqrskit.adapters.postgres.saga_store)."""
    table = {part: Identifier(t.schema, t.saga_table(part)) for part in _SAGA_TABLES}
    statements = [
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
        **table,
        "instances_status": Identifier(f"{t.saga_table('instances')}_status"),
        "deadlines_due": Identifier(f"{t.saga_table('deadlines')}_due"),
    }
    return [SQL(statement).format(**names) for statement in statements]


_SAGA_TABLES = ("instances", "history", "deadlines", "handled", "positions", "pending")

#: Every migration, in order. Append; never edit one that was released.
MIGRATIONS: Sequence[Migration] = (
    Migration(1, "initial schema", {"store": _store, "snapshots": _snapshots, "sagas": _sagas}),
)
