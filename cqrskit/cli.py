"""The ``cqrskit`` command line: thin parsing over the library's functions."""

from __future__ import annotations

import json
import logging
import signal
import sys
from dataclasses import asdict

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cqrskit._loading import load_application_class
from cqrskit._version import __version__
from cqrskit.doctor import check_services
from cqrskit.errors import ConfigurationError, CqrskitError
from cqrskit.relay import OutboxRelay, read_status
from cqrskit.settings import Settings

__all__ = ["main"]


def _settings(**overrides: object) -> Settings:
    try:
        return Settings.load(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


APP_OPTION = click.option(
    "--app",
    "app_spec",
    metavar="MODULE:CLASS",
    help="The application class (default: CQRSKIT_APP), e.g. examples.shop:ShopApp.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cqrskit")
def main() -> None:
    """cqrskit: CQRS and event sourcing on PostgreSQL, Kafka and Elasticsearch."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(as_json: bool) -> None:
    """Check that PostgreSQL, Kafka and Elasticsearch are reachable.

    Exits 1 when any service is unreachable, naming it and what to do.
    """
    checks = check_services(_settings())
    if as_json:
        click.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        table = Table(title="cqrskit doctor")
        for column in ("service", "address", "status", "version", "detail"):
            table.add_column(column)
        for c in checks:
            status = "[green]up[/green]" if c.ok else "[red]DOWN[/red]"
            table.add_row(c.service, escape(c.address), status, escape(c.version), escape(c.detail))
        console = Console()
        console.print(table)
        for c in checks:
            if not c.ok:
                console.print(f"[red]{c.service} is unreachable[/red]: {escape(c.hint)}.")
    if not all(c.ok for c in checks):
        sys.exit(1)


@main.group()
def db() -> None:
    """The event store's schema in PostgreSQL."""


@db.command("init")
@APP_OPTION
def db_init(app_spec: str | None) -> None:
    """Create or migrate the event store's tables; idempotent, never drops data."""
    settings = _settings(app=app_spec)
    try:
        app_class = load_application_class(settings.app)
        app = app_class(settings, env={"CREATE_TABLE": "false"})
        try:
            app.create_tables()
        finally:
            app.close()
    except CqrskitError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"event store of {app_class.name!r} is ready in schema "
        f"{settings.postgres_schema!r} at {settings.postgres_address()}"
    )


def _application_name(settings: Settings) -> str:
    try:
        return load_application_class(settings.app).name
    except CqrskitError as exc:
        raise click.ClickException(str(exc)) from exc


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@main.group()
def relay() -> None:
    """The outbox relay: publish stored events to Kafka in commit order."""


@relay.command("run")
@APP_OPTION
@click.option(
    "--name", default="default", show_default=True, help="Relay name (one position each)."
)
def relay_run(app_spec: str | None, name: str) -> None:
    """Publish the outbox to Kafka until SIGTERM; several may run, one leads.

    On SIGTERM or Ctrl-C the relay waits for the broker to acknowledge what
    is in flight, records its position and exits 0.
    """
    settings = _settings(app=app_spec)
    application_name = _application_name(settings)
    _configure_logging()
    outbox_relay = OutboxRelay(settings, application_name, name)

    def stop(signum: int, _frame: object) -> None:
        logging.getLogger("cqrskit.relay").info(
            "received %s, draining", signal.Signals(signum).name
        )
        outbox_relay.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        outbox_relay.run()
    except CqrskitError as exc:
        raise click.ClickException(str(exc)) from exc


@relay.command("status")
@APP_OPTION
@click.option("--name", default="default", show_default=True, help="Relay name.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def relay_status(app_spec: str | None, name: str, as_json: bool) -> None:
    """Position, store head, lag in events and seconds, active instance, last error."""
    settings = _settings(app=app_spec)
    application_name = _application_name(settings)
    try:
        status = read_status(settings, application_name, name)
    except CqrskitError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(asdict(status), default=str, indent=2))
        return
    table = Table(title=f"relay {name!r} of {application_name!r}")
    table.add_column("")
    table.add_column("")
    rows = [
        ("position", str(status.position)),
        ("store head", str(status.head)),
        ("lag (events)", str(status.lag_events)),
        ("lag (seconds)", f"{status.lag_seconds:.1f}"),
        ("active instance", status.active_instance or "none"),
        ("last heartbeat", str(status.heartbeat_at or "never")),
        (
            "last error",
            f"{status.last_error} ({status.last_error_at})" if status.last_error else "none",
        ),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))
    Console().print(table)


if __name__ == "__main__":
    main()
