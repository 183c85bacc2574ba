"""``cqrskit db`` (the schema: init, its SQL, status) and ``cqrskit teardown``."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Any

import click

from cqrskit._loading import load_application_class
from cqrskit.cli._common import (
    APP_OPTION,
    DRY_RUN_OPTION,
    JSON_OPTION,
    PROJECTIONS_OPTION,
    SAGAS_OPTION,
    YES_OPTION,
    application_name,
    confirm,
    echo_json,
    errors_as_messages,
    load_settings,
    print_table,
    projection_classes,
)
from cqrskit.eventstore import Application
from cqrskit.runtime import Runtime
from cqrskit.schema import SchemaStatus
from cqrskit.settings import Settings
from cqrskit.teardown import TeardownPlan
from cqrskit.topology import Topology

__all__ = ["db", "teardown"]

#: ``db status`` exits with this when migrations are pending (or none was applied).
PENDING_EXIT = 1
#: ... and with this when the schema records migrations newer than this cqrskit.
NEWER_EXIT = 2


def _application(
    app_spec: str | None, sagas_module: str | None
) -> tuple[Settings, type[Application]]:
    settings = load_settings(app=app_spec, sagas=sagas_module)
    with errors_as_messages():
        return settings, load_application_class(settings.app)


@click.group()
def db() -> None:
    """The application's schema in PostgreSQL: create, migrate, show its version."""


@db.command("init")
@APP_OPTION
@SAGAS_OPTION
@click.option(
    "--sql",
    "as_sql",
    is_flag=True,
    help="Print the whole schema as one idempotent SQL script instead (connects to nothing).",
)
def db_init(app_spec: str | None, sagas_module: str | None, as_sql: bool) -> None:
    """Create or migrate every table the application uses; idempotent, never drops data.

    The events (and snapshots, if the application takes them), the
    idempotency keys, the relay's tables, and the process managers' tables
    when CQRSKIT_SAGAS is set. Pending migrations are applied in one
    transaction under an advisory lock, so concurrent runs take turns. The
    relay, the workers, the saga runners and the command side create
    nothing: they refuse to start until this has run.

    With --sql it prints the same as a script for a DBA or an Alembic
    migration (apply it with psql -v ON_ERROR_STOP=1 -f).
    """
    settings, app_class = _application(app_spec, sagas_module)
    runtime = Runtime(settings)
    if as_sql:
        click.echo(runtime.schema_sql(app_class), nl=False)
        return
    with errors_as_messages():
        applied = runtime.init_schema(app_class)
    for m in applied:
        click.echo(f"applied migration {m.number} ({m.name}) to part {m.part}")
    parts = ", ".join(runtime.schema_parts(app_class))
    click.echo(
        f"event store of {app_class.name!r} is ready in schema {settings.postgres_schema!r} "
        f"at {settings.postgres_address()} (parts {parts})"
        + ("" if applied else "; it was up to date")
    )


@db.command("status")
@APP_OPTION
@SAGAS_OPTION
@JSON_OPTION
def db_status(app_spec: str | None, sagas_module: str | None, as_json: bool) -> None:
    """The schema's version, the migrations applied, and those pending.

    Exits 0 when it is up to date, 1 when migrations are pending (run
    'cqrskit db init'), 2 when the schema is newer than this cqrskit.
    """
    settings, app_class = _application(app_spec, sagas_module)
    with errors_as_messages():
        status = Runtime(settings).schema_status(app_class)
    if as_json:
        echo_json(_as_json(status))
    else:
        print_table(
            f"migrations of {status.application!r} in schema {status.schema!r}",
            ("migration", "name", "part", "applied at", "by cqrskit"),
            [(m.number, m.name, m.part, m.applied_at, m.cqrskit_version) for m in status.history],
        )
        click.echo(_summary(status))
    if status.newer:
        sys.exit(NEWER_EXIT)
    if status.pending:
        sys.exit(PENDING_EXIT)


def _summary(status: SchemaStatus) -> str:
    where = f"schema {status.schema!r} of {status.application!r}"
    if status.newer:
        return (
            f"{where} is at migration {max(status.newer)}, newer than this cqrskit knows "
            f"(up to {status.latest}): run the cqrskit that migrated it"
        )
    if status.pending:
        steps = ", ".join(f"{p.number} ({p.name}) of part {p.part}" for p in status.pending)
        return f"{where} is at migration {status.version}; pending: {steps}; run 'cqrskit db init'"
    return f"{where} is at migration {status.version}, up to date (parts {', '.join(status.parts)})"


def _as_json(status: SchemaStatus) -> dict[str, Any]:
    return {
        **asdict(status),
        "version": status.version,
        "newer": list(status.newer),
        "up_to_date": status.up_to_date,
    }


@click.command()
@APP_OPTION
@PROJECTIONS_OPTION
@YES_OPTION
@DRY_RUN_OPTION
def teardown(
    app_spec: str | None, projections_module: str | None, yes: bool, dry_run: bool
) -> None:
    """Remove an application for good: its schema, topics, groups and read models.

    In PostgreSQL, the schema when it holds nothing but the application's
    tables (never public); in a shared schema, only the application's tables
    and its rows in cqrskit's shared ones. In Kafka, its events' and
    dead-letter topics and its consumer groups. In Elasticsearch, each
    configured projection's alias and indices and its checkpoints, rebuild
    progress and stats. Stop the relay, workers and saga runners first.

    It lists everything first and asks (without a terminal it needs --yes);
    --dry-run lists and removes nothing.
    """
    settings = load_settings(app=app_spec, projections=projections_module)
    app_name = application_name(settings)
    names = [cls.name for cls in projection_classes(settings)] if settings.projections else []
    runtime = Runtime(settings)
    with errors_as_messages():
        plan = runtime.teardown_plan(app_name, names)
    if not plan.removals:
        click.echo(f"nothing of {app_name!r} found: {_where(settings, plan)}")
        return
    print_table(
        f"teardown of {app_name!r}: {len(plan.removals)} to remove",
        ("service", "what", "name", "detail"),
        [(r.service, r.kind, r.name, r.detail) for r in plan.removals],
    )
    for line in plan.kept:
        click.echo(f"kept: {line}")
    if not names:
        click.echo("kept: every read model (no projections configured: --projections)")
    if dry_run:
        click.echo("dry run: nothing was removed")
        return
    count = len(plan.removals)
    confirm(f"remove everything listed above ({count}) of {app_name!r} for good", yes=yes)
    with errors_as_messages():
        runtime.teardown(plan)
    click.echo(f"removed everything listed ({count}) of {app_name!r}")


def _where(settings: Settings, plan: TeardownPlan) -> str:
    looked = [
        f"schema {settings.postgres_schema!r}",
        f"topics {Topology.of(settings, plan.application).topic_start}*",
    ]
    if plan.projections:
        looked.append(f"read models {', '.join(plan.projections)}")
    return "looked in " + ", ".join(looked)
