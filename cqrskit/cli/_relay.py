"""``cqrskit relay``: run the outbox relay, show where it is."""

from __future__ import annotations

from dataclasses import asdict

import click

from cqrskit.cli._common import (
    APP_OPTION,
    JSON_OPTION,
    METRICS_OPTION,
    application_name,
    configure_logging,
    echo_json,
    errors_as_log_lines,
    errors_as_messages,
    fail_with_first,
    load_settings,
    on_stop_signals,
    print_table,
    start_metrics,
)
from cqrskit.relay import LayoutStatus, RelayStatus
from cqrskit.runtime import Runtime

__all__ = ["relay"]

NAME_OPTION = click.option(
    "--name", default="default", show_default=True, help="Relay name (each keeps its own position)."
)


@click.group()
def relay() -> None:
    """The outbox relay: publish stored events to Kafka in commit order."""


@relay.command("run")
@APP_OPTION
@NAME_OPTION
@METRICS_OPTION
def relay_run(app_spec: str | None, name: str, metrics_port: int | None) -> None:
    """Publish the outbox to Kafka until SIGTERM; several may run, one leads.

    On SIGTERM or Ctrl-C the relay waits for the broker to acknowledge what
    is in flight, records its position and exits 0.
    """
    settings = load_settings(app=app_spec, metrics_port=metrics_port)
    outbox_relay = Runtime(settings).relay(application_name(settings), name)
    configure_logging(settings)
    start_metrics(settings)
    on_stop_signals(outbox_relay.stop, "cqrskit.relay")
    with errors_as_log_lines("cqrskit.relay"):
        outbox_relay.run()


@relay.command("status")
@APP_OPTION
@NAME_OPTION
@JSON_OPTION
def relay_status(app_spec: str | None, name: str, as_json: bool) -> None:
    """Position, store head, lag in events and seconds, active instance, last error,
    and each topic's partitions: those the relay sends events to, and those Kafka has."""
    settings = load_settings(app=app_spec)
    app_name = application_name(settings)
    with errors_as_messages():
        runtime = Runtime(settings)
        status = runtime.relay_status(app_name, name)
        layouts = runtime.layout_status(app_name)
    if as_json:
        topics = [{**asdict(layout), "unused": layout.unused} for layout in layouts]
        echo_json({**asdict(status), "topics": topics})
    else:
        _print_status(f"relay {name!r} of {app_name!r}", status, layouts)
    fail_with_first(layout.kafka_error for layout in layouts)


def _print_status(title: str, status: RelayStatus, layouts: list[LayoutStatus]) -> None:
    last_error = f"{status.last_error} ({status.last_error_at})" if status.last_error else "none"
    print_table(
        title,
        ("", ""),
        [
            ("position", status.position),
            ("store head", status.head),
            ("lag (events)", status.lag_events),
            ("lag (seconds)", f"{status.lag_seconds:.1f}"),
            ("active instance", status.active_instance or "none"),
            ("last heartbeat", status.heartbeat_at or "never"),
            ("last error", last_error),
            *((f"partitions of {layout.topic}", _partitions(layout)) for layout in layouts),
        ],
    )


@relay.command("repartition")
@click.argument("topics", nargs=-1)
@APP_OPTION
def relay_repartition(topics: tuple[str, ...], app_spec: str | None) -> None:
    """Move topics (default: all) onto every partition they have in Kafka.

    Partitions added with Kafka's tools get no events until this runs. The
    leading relay records the move at the position it has caught up to;
    workers apply a topic's later events once every old partition is
    complete up to it, so nothing is applied twice or out of order.
    Idempotent.
    """
    settings = load_settings(app=app_spec)
    app_name = application_name(settings)
    with errors_as_messages():
        requested = Runtime(settings).request_repartition(app_name, topics)
    for topic, used, moving_to in requested:
        click.echo(f"{topic}: {used} -> {moving_to} partitions, once the leading relay catches up")
    if not requested:
        click.echo("every topic uses all its partitions already")


def _partitions(layout: LayoutStatus) -> str:
    if layout.moving_to is not None:
        return f"{layout.used} used, moving to {layout.moving_to} once the relay catches up"
    if layout.in_kafka is None:
        return f"{layout.used} used (Kafka did not answer)"
    if not layout.unused:
        return f"{layout.used} used of {layout.in_kafka}"
    return (
        f"{layout.used} used of {layout.in_kafka}: {layout.unused} added partitions get "
        "watermarks only until 'cqrskit relay repartition'"
    )
