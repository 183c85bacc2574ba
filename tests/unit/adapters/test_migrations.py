"""The schema's SQL, built without a database: ``cqrskit db init --sql`` and its parts."""

from __future__ import annotations

import re

from click.testing import CliRunner

from cqrskit import Settings
from cqrskit.adapters.postgres.migrations import MIGRATIONS
from cqrskit.cli._main import main
from cqrskit.runtime import Runtime
from examples.library.app import LibraryApp
from examples.shop import ShopApp

NOWHERE = "postgresql://cqrskit:cqrskit@127.0.0.1:1/cqrskit"


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [m.number for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_every_statement_of_the_script_is_idempotent() -> None:
    """--sql prints every migration, whatever the database has: each must be safe twice."""
    script = Runtime(Settings(postgres_schema="s", sagas="x")).schema_sql(ShopApp)
    statements = [line for line in script.splitlines() if line and not line.startswith("--")]
    assert statements[0] == "BEGIN;"
    assert statements[-1] == "COMMIT;"
    for statement in statements[1:-1]:
        if statement.startswith("CREATE"):
            assert re.match(
                r"CREATE (SCHEMA|TABLE|UNIQUE INDEX|INDEX) IF NOT EXISTS|CREATE OR REPLACE",
                statement,
            ), statement
        elif statement.startswith("INSERT"):
            assert statement.endswith("ON CONFLICT DO NOTHING;"), statement
        elif statement.startswith("ALTER"):
            assert "IF NOT EXISTS" in statement, statement
        else:
            assert statement.startswith("DO $do$"), statement


def test_the_parts_follow_the_configuration() -> None:
    plain = Runtime(Settings(postgres_schema="s", sagas=None))
    assert plain.schema_parts(LibraryApp) == ("store",)
    assert plain.schema_parts(ShopApp) == ("store", "snapshots")  # it snapshots its items
    assert plain.schema_parts(ShopApp, sagas=True) == ("store", "snapshots", "sagas")
    assert Runtime(Settings(sagas="examples.shop.workflow")).schema_parts(LibraryApp) == (
        "store",
        "sagas",
    )
    script = plain.schema_sql(LibraryApp)
    assert '"s"."library_events"' in script
    assert "snapshots" not in script
    assert "saga" not in script


def test_db_init_sql_prints_the_script_without_reaching_postgresql() -> None:
    done = CliRunner().invoke(
        main,
        ["db", "init", "--sql", "--app", "examples.library.app:LibraryApp"],
        env={"CQRSKIT_POSTGRES_DSN": NOWHERE, "CQRSKIT_POSTGRES_SCHEMA": "lib"},
    )
    assert done.exit_code == 0, done.output
    assert done.output.startswith("-- cqrskit ")
    assert 'CREATE SCHEMA IF NOT EXISTS "lib";' in done.output
    assert 'INSERT INTO "lib"."cqrskit_migrations"' in done.output
