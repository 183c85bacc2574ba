"""The ``cqrskit`` command line: thin parsing over the library's functions."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cqrskit._version import __version__
from cqrskit.cli._common import load_settings
from cqrskit.cli._db import db, teardown
from cqrskit.cli._new import new
from cqrskit.cli._projections import projections
from cqrskit.cli._relay import relay
from cqrskit.cli._sagas import sagas
from cqrskit.cli._services import services
from cqrskit.cli._status import status
from cqrskit.doctor import check_services
from cqrskit.settings import variable_for

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cqrskit")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default=None,
    help="The least severe log lines written (default: CQRSKIT_LOG_LEVEL, or info).",
)
def main(log_level: str | None) -> None:
    """cqrskit: CQRS and event sourcing on PostgreSQL, Kafka and Elasticsearch."""
    if log_level is not None:
        # Every command loads its settings from the environment: this one wins.
        os.environ[variable_for("log_level")] = log_level.lower()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(as_json: bool) -> None:
    """Check that PostgreSQL, Kafka and Elasticsearch are reachable.

    Exits 1 when any service is unreachable, naming it and what to do.
    """
    checks = check_services(load_settings())
    if as_json:
        click.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        table = Table(title="cqrskit doctor")
        for column in ("service", "address", "status", "version", "detail"):
            table.add_column(column)
        for c in checks:
            status = "[green]up[/green]" if c.ok else "[red]DOWN[/red]"
            table.add_row(c.service, escape(c.address), status, escape(c.version), escape(c.detail))
        # A pipe or a log file is not 80 columns wide: one line per service.
        console = Console(width=None if sys.stdout.isatty() else 200)
        console.print(table)
        for c in checks:
            if not c.ok:
                console.print(
                    f"[red]{c.service} is unreachable[/red] at {escape(c.address)} "
                    f"({escape(c.detail)}): {escape(c.hint)}."
                )
    if not all(c.ok for c in checks):
        sys.exit(1)


main.add_command(db)
main.add_command(teardown)
main.add_command(relay)
main.add_command(projections)
main.add_command(status)
main.add_command(sagas)
main.add_command(services)
main.add_command(new)


@main.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def config(as_json: bool) -> None:
    """The settings in effect, from pyproject.toml, the environment and secret files.

    Passwords, API keys and credentials in URLs are masked.
    """
    settings = load_settings()
    shown = settings.masked()
    if as_json:
        click.echo(json.dumps(shown, indent=2, default=str))
        return
    table = Table(title="cqrskit settings")
    table.add_column("setting")
    table.add_column("variable")
    table.add_column("value")
    for name, value in shown.items():
        table.add_row(name, variable_for(name), escape("" if value is None else str(value)))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
