"""The schema and its migrations on the real PostgreSQL: db init, --sql, status, refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import Environment

from cqrskit import SchemaNotReady, Settings
from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.postgres.event_store import PostgresEventStoreFactory
from cqrskit.adapters.postgres.schema import DDL_LOCK
from cqrskit.runtime import Runtime
from examples.shop import ShopApp
from examples.shop.workflow import OrderWorkflow
from tests.integration.conftest import REPO_ROOT, init_schema, psql
from tests.processes import cli_run, wait_until


def cli(settings: Settings, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """``cqrskit <args>`` on ``settings``' schema, to its end."""
    env = {
        **os.environ,
        "CQRSKIT_APP": "examples.shop:ShopApp",
        "CQRSKIT_POSTGRES_SCHEMA": settings.postgres_schema,
        **variables,
    }
    return cli_run(args, env, timeout=120)


def migration_rows(settings: Settings) -> list[tuple[Any, ...]]:
    with pg_backend.connect(settings) as conn:
        return conn.execute(
            f'SELECT application, part, number FROM "{settings.postgres_schema}".'
            "cqrskit_migrations ORDER BY 1, 2, 3"
        ).fetchall()


def test_db_init_sql_connects_to_nothing_and_psql_alone_makes_the_schema_ready(
    empty_schema_settings: Settings,
) -> None:
    settings = empty_schema_settings
    nowhere = "postgresql://cqrskit:cqrskit@127.0.0.1:1/cqrskit"
    printed = cli(settings, "db", "init", "--sql", CQRSKIT_POSTGRES_DSN=nowhere)
    assert printed.returncode == 0, printed.stderr
    script = printed.stdout
    assert script.count("BEGIN;") == 1
    assert script.rstrip().endswith("COMMIT;")
    assert "cqrskit_migrations" in script
    for _ in range(2):  # idempotent: a second run changes nothing and fails nothing
        applied = psql(settings, script)
        assert applied.returncode == 0, applied.stderr
    status = Runtime(settings).schema_status(ShopApp)
    assert status.up_to_date, status
    assert [(m.number, m.part) for m in status.history] == [
        (1, "store"),
        (1, "snapshots"),
        (1, "sagas"),
    ]
    # db init finds nothing to do after the script, and the application runs on it.
    assert Runtime(settings).init_schema(ShopApp) == []
    with ShopApp(settings) as app:
        assert app.recorder.max_notification_id() is None


def test_two_concurrent_db_init_runs_take_turns_and_both_succeed(
    empty_schema_settings: Settings,
) -> None:
    settings = empty_schema_settings
    tag = f"init-race-{settings.postgres_schema}"[:60]
    env = {
        **os.environ,
        "CQRSKIT_APP": "examples.shop:ShopApp",
        "CQRSKIT_POSTGRES_SCHEMA": settings.postgres_schema,
        "PGAPPNAME": tag,  # libpq names their sessions, so the test can see them wait
    }
    command = [sys.executable, "-m", "cqrskit.cli", "db", "init"]
    # Hold the lock db init takes, so that both runs are surely waiting for it
    # at once when it is released: then they really race.
    with (
        pg_backend.connect(settings, autocommit=False) as holder,
        pg_backend.connect(settings) as watcher,
    ):
        holder.execute("SELECT pg_advisory_xact_lock(%s)", [DDL_LOCK])
        runs = [
            subprocess.Popen(
                command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for _ in range(2)
        ]

        def both_waiting() -> bool:
            row = watcher.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = %s",
                [tag],
            ).fetchone()
            return bool(row and row[0] == 2)

        wait_until(both_waiting, 60, "both db init runs to wait for the lock")
        holder.rollback()
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    printed = [out.decode() for out, _ in outputs]
    assert sum("applied migration 1 (initial schema) to part store" in p for p in printed) == 1
    assert sum("it was up to date" in p for p in printed) == 1
    assert migration_rows(settings) == [
        ("shop", "sagas", 1),
        ("shop", "snapshots", 1),
        ("shop", "store", 1),
    ]


def test_db_status_says_pending_then_up_to_date_then_newer_with_its_exit_codes(
    empty_schema_settings: Settings,
) -> None:
    settings = empty_schema_settings
    missing = cli(settings, "db", "status")
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "pending: 1 (initial schema) of part store" in missing.stdout
    assert "run 'cqrskit db init'" in missing.stdout
    init_schema(settings)
    ready = cli(settings, "db", "status")
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert "at migration 1, up to date" in ready.stdout
    assert "initial schema" in ready.stdout  # the history
    with pg_backend.connect(settings) as conn:
        conn.execute(
            f'INSERT INTO "{settings.postgres_schema}".cqrskit_migrations '
            "(application, part, number, name, cqrskit_version) "
            "VALUES ('shop', 'store', 99, 'from the future', '9.0.0')"
        )
    newer = cli(settings, "db", "status")
    assert newer.returncode == 2, newer.stdout + newer.stderr
    assert "at migration 99, newer than this cqrskit knows (up to 1)" in newer.stdout
    with pytest.raises(SchemaNotReady, match=r"migration 99, newer .* \(9\.0\.0\)"):
        Runtime(settings).init_schema(ShopApp)
    with pytest.raises(SchemaNotReady, match="newer"):
        ShopApp(settings)
    refused = psql(settings, Runtime(settings).schema_sql(ShopApp))
    assert refused.returncode != 0
    assert "newer than cqrskit" in refused.stderr


def test_a_part_configured_later_is_installed_by_the_next_db_init(
    empty_schema_settings: Settings,
) -> None:
    settings = empty_schema_settings
    runtime = Runtime(settings)
    assert [m.part for m in runtime.init_schema(ShopApp, sagas=False)] == ["store", "snapshots"]
    with ShopApp(settings):
        pass  # the command side needs no saga table
    with pytest.raises(SchemaNotReady, match="part sagas is pending"):
        runtime.saga_store("shop")
    assert [(m.number, m.part) for m in runtime.schema_status(ShopApp, sagas=True).pending] == [
        (1, "sagas")
    ]
    assert [m.part for m in runtime.init_schema(ShopApp, sagas=True)] == ["sagas"]
    assert runtime.saga_store("shop").instances(OrderWorkflow.name) == []


@pytest.mark.parametrize(
    "command",
    [
        ("relay", "run"),
        ("projections", "run", "order_summaries"),
        ("sagas", "run", "order_workflow"),
    ],
    ids=["relay", "worker", "saga-runner"],
)
def test_a_process_refuses_a_schema_never_initialised_in_one_line(
    empty_schema_settings: Settings, command: tuple[str, ...]
) -> None:
    settings = empty_schema_settings
    started = time.monotonic()
    done = cli(settings, *command, CQRSKIT_PROJECTIONS="projections")
    assert done.returncode == 1, done.stdout + done.stderr
    # One line: click's "Error:" line, or the log line of a long-running
    # command (relay run, projections run), in the log's own format.
    lines = [line for line in done.stderr.splitlines() if "is not ready" in line]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error:") or '"level": "ERROR"' in lines[0], lines[0]
    assert f"schema {settings.postgres_schema!r} of application 'shop' is not ready" in lines[0]
    assert "run 'cqrskit db init'" in lines[0]
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60
    with pg_backend.connect(settings) as conn:
        created = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", [settings.postgres_schema]
        ).fetchone()
    assert created is None, f"{command[0]} created the schema"


# -- migration 1 is what eventsourcing's recorders create ----------------------------------


def _catalog(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    """The tables, columns, indexes, constraints and types of ``schema``, its name left out."""

    def rows(query: str) -> list[tuple[Any, ...]]:
        found = conn.execute(query, [schema]).fetchall()
        return sorted(tuple(str(v).replace(schema, "<schema>") for v in row) for row in found)

    return {
        "columns": rows(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = %s"
        ),
        "indexes": rows("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = %s"),
        "options": rows(
            "SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'"
        ),
        "types": rows(
            "SELECT udt_name, attribute_name, data_type FROM information_schema.attributes "
            "WHERE udt_schema = %s"
        ),
        "functions": rows(
            "SELECT routine_name FROM information_schema.routines WHERE routine_schema = %s"
        ),
    }


@pytest.fixture
def library_schema(settings: Settings, unique_name: str) -> Iterator[Settings]:
    """A schema whose events and snapshots tables eventsourcing's own recorders created."""
    library = settings.model_copy(update={"postgres_schema": f"{unique_name}_es"})
    with pg_backend.connect(settings) as conn:
        conn.execute(f'CREATE SCHEMA "{library.postgres_schema}"')
    env = {**PostgresEventStoreFactory.environment(library), "CREATE_TABLE": "yes"}
    env.pop("PERSISTENCE_MODULE")
    factory = PostgresFactory(Environment("shop", env))
    try:
        factory.application_recorder()
        factory.aggregate_recorder("snapshots")
        yield library
    finally:
        factory.close()
        with pg_backend.connect(settings) as conn:
            conn.execute(f'DROP SCHEMA "{library.postgres_schema}" CASCADE')


def test_migration_one_creates_the_event_tables_eventsourcing_creates(
    schema_settings: Settings, library_schema: Settings
) -> None:
    """Guards an upgrade of eventsourcing that changes its tables: migration 1 would differ."""
    ours_only = {"shop_idempotency", "cqrskit_", "shop_saga_"}
    with pg_backend.connect(schema_settings) as conn:
        ours = _catalog(conn, schema_settings.postgres_schema)
        theirs = _catalog(conn, library_schema.postgres_schema)
    for kind in ("columns", "indexes", "options"):
        kept = [row for row in ours[kind] if not any(row[0].startswith(o) for o in ours_only)]
        assert kept == theirs[kind], kind
    assert ours["types"] == theirs["types"]
    assert ours["functions"] == theirs["functions"]
