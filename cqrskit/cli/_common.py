"""What every command shares: settings, options, error translation, output."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cqrskit import observability
from cqrskit._loading import load_application_class, load_projections
from cqrskit.errors import ConfigurationError, CqrskitError
from cqrskit.projections import Projection
from cqrskit.settings import Settings

__all__ = [
    "APP_OPTION",
    "DRY_RUN_OPTION",
    "JSON_OPTION",
    "METRICS_OPTION",
    "PROJECTIONS_OPTION",
    "SAGAS_OPTION",
    "YES_OPTION",
    "application_name",
    "configure_logging",
    "confirm",
    "echo_json",
    "errors_as_log_lines",
    "errors_as_messages",
    "fail_with_first",
    "load_settings",
    "on_stop_signals",
    "print_table",
    "projection_classes",
    "start_metrics",
]

APP_OPTION = click.option(
    "--app",
    "app_spec",
    metavar="MODULE:CLASS",
    help="The application class (default: CQRSKIT_APP, or app in [tool.cqrskit]).",
)
PROJECTIONS_OPTION = click.option(
    "--projections",
    "projections_module",
    metavar="MODULE",
    help="Module of the projections (default: CQRSKIT_PROJECTIONS, or [tool.cqrskit]).",
)
SAGAS_OPTION = click.option(
    "--sagas",
    "sagas_module",
    metavar="MODULE",
    help="Module of the process managers (default: CQRSKIT_SAGAS, or [tool.cqrskit]).",
)
METRICS_OPTION = click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics on this port (default: CQRSKIT_METRICS_PORT; 0: any free).",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
YES_OPTION = click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Do it without asking (needed when there is no terminal to ask on).",
)
DRY_RUN_OPTION = click.option(
    "--dry-run", is_flag=True, help="Say what would happen, and change nothing."
)


def confirm(action: str, *, yes: bool) -> None:
    """Ask before ``action`` (a sentence: what would happen) unless ``yes``.

    On a terminal the user is asked, and anything but yes aborts (exit 1);
    without a terminal (a script, a pipe, CI) the command is refused unless
    ``--yes`` was given, so nothing destructive ever runs unconfirmed.
    """
    if yes:
        return
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise click.ClickException(
            f"refusing to {action} without confirmation: there is no terminal to ask on; "
            "pass --yes to do it, or --dry-run to see what it would do"
        )
    click.confirm(f"This will {action}. Go on?", abort=True)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and the given options; a bad value is a clean error."""
    try:
        return Settings.load(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def errors_as_messages() -> Iterator[None]:
    """Turn cqrskit's errors into a one-line message and exit status 1."""
    try:
        yield
    except CqrskitError as exc:
        raise click.ClickException(str(exc)) from exc


#: What an error of cqrskit says about itself that a JSON log line keeps as keys.
_ERROR_FIELDS = ("projection", "index", "fields", "service", "address", "variable")


@contextmanager
def errors_as_log_lines(logger: str) -> Iterator[None]:
    """For a command that runs until stopped, with logging configured: a cqrskit
    error ends it with one log line (JSON or text, like its other lines) and exit
    status 1, not a message of another format after them."""
    try:
        yield
    except CqrskitError as exc:
        fields = {name: getattr(exc, name) for name in _ERROR_FIELDS if hasattr(exc, name)}
        logging.getLogger(logger).error("%s", exc, extra={**fields, "error": type(exc).__name__})
        raise SystemExit(1) from None


def fail_with_first(errors: Iterable[str]) -> None:
    """After a report printed in full: exit 1 with the first of ``errors`` (one line each).

    A status that could read only part of the pipeline still shows that
    part, then says which service did not answer and the setting to check.
    """
    for error in errors:
        if error:
            raise click.ClickException(error)


def application_name(settings: Settings) -> str:
    """The name (table and topic prefix) of the configured application."""
    with errors_as_messages():
        return load_application_class(settings.app).name


def projection_classes(
    settings: Settings, names: Sequence[str] = ()
) -> list[type[Projection[Any]]]:
    """The configured projections, or those named (all must exist)."""
    with errors_as_messages():
        found = load_projections(settings.projections)
    unknown = [n for n in names if n not in found]
    if unknown:
        raise click.ClickException(
            f"unknown projection {', '.join(unknown)}; known: {', '.join(found)}"
        )
    return [found[n] for n in names] if names else list(found.values())


def configure_logging(settings: Settings) -> None:
    """Log lines to stderr (JSON or text, by ``CQRSKIT_LOG_FORMAT``, from
    ``CQRSKIT_LOG_LEVEL`` up), one per change of state."""
    observability.configure_logging(settings.log_format, settings.log_level)


def start_metrics(settings: Settings) -> None:
    """Serve Prometheus metrics if ``CQRSKIT_METRICS_PORT`` (or --metrics-port) is set."""
    if settings.metrics_port is not None:
        with errors_as_messages():
            port = observability.serve_metrics(settings.metrics_port, settings.metrics_address)
        click.echo(f"metrics at http://{settings.metrics_address}:{port}/metrics", err=True)


def on_stop_signals(stop: Callable[[], None], logger: str) -> None:
    """Call ``stop`` on SIGTERM or SIGINT (Ctrl-C)."""

    def handler(signum: int, _frame: object) -> None:
        logging.getLogger(logger).info("received %s, stopping", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def echo_json(value: object) -> None:
    """Print a dataclass (or a list of them) as JSON."""
    if isinstance(value, list):
        value = [asdict(v) if is_dataclass(v) and not isinstance(v, type) else v for v in value]
    elif is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    click.echo(json.dumps(value, default=str, indent=2))


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows as a table; cell text is shown literally, never as markup."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    # A pipe or a log file is not 80 columns wide: do not squeeze the table.
    Console(width=None if sys.stdout.isatty() else 200).print(table)
