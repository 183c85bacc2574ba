"""The ``cqrskit`` command line: thin parsing over the library's functions."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cqrskit._version import __version__
from cqrskit.doctor import check_services
from cqrskit.errors import ConfigurationError
from cqrskit.settings import Settings

__all__ = ["main"]


def _settings() -> Settings:
    try:
        return Settings.load()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


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


if __name__ == "__main__":
    main()
