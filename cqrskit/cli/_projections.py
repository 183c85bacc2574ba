"""``cqrskit projections``: list, run, status, dead letters."""

from __future__ import annotations

import threading

import click

from cqrskit.cli._common import (
    APP_OPTION,
    JSON_OPTION,
    PROJECTIONS_OPTION,
    application_name,
    configure_logging,
    echo_json,
    errors_as_messages,
    load_settings,
    on_stop_signals,
    print_table,
    projection_classes,
)
from cqrskit.projections import (
    DeadLetterTopic,
    ProjectionWorker,
    projection_status,
    replay_dead_letters,
)

__all__ = ["projections"]


@click.group()
def projections() -> None:
    """Read models in Elasticsearch, kept up to date from Kafka."""


@projections.command("list")
@PROJECTIONS_OPTION
@JSON_OPTION
def projections_list(projections_module: str | None, as_json: bool) -> None:
    """The projections the module defines, with the events they handle."""
    settings = load_settings(projections=projections_module)
    found = [p.describe() for p in projection_classes(settings)]
    if as_json:
        echo_json(found)
        return
    print_table(
        "projections",
        ("name", "view", "handles"),
        [(p["name"], p["view"], ", ".join(p["event_types"])) for p in found],
    )


@projections.command("run")
@click.argument("names", nargs=-1, required=True)
@APP_OPTION
@PROJECTIONS_OPTION
def projections_run(
    names: tuple[str, ...], app_spec: str | None, projections_module: str | None
) -> None:
    """Run the workers of the named projections until SIGTERM.

    Each projection is one Kafka consumer group: start this command several
    times to share a projection's partitions between processes.
    """
    settings = load_settings(app=app_spec, projections=projections_module)
    app_name = application_name(settings)
    workers = [
        ProjectionWorker(settings, app_name, cls()) for cls in projection_classes(settings, names)
    ]
    configure_logging()

    def stop_all() -> None:
        for worker in workers:
            worker.stop()

    on_stop_signals(stop_all, "cqrskit.projections")
    errors: list[BaseException] = []

    def run(worker: ProjectionWorker) -> None:
        try:
            worker.run()
        except BaseException as exc:  # reported below, after the others stop
            errors.append(exc)
            stop_all()

    threads = [threading.Thread(target=run, args=(w,), name=w.projection.name) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)  # wake for signals
    if errors:
        with errors_as_messages():
            raise errors[0]


@projections.command("status")
@click.argument("names", nargs=-1)
@APP_OPTION
@PROJECTIONS_OPTION
@JSON_OPTION
def projections_status(
    names: tuple[str, ...], app_spec: str | None, projections_module: str | None, as_json: bool
) -> None:
    """Documents, applied position and lag of each projection."""
    settings = load_settings(app=app_spec, projections=projections_module)
    app_name = application_name(settings)
    with errors_as_messages():
        statuses = [
            projection_status(settings, app_name, cls())
            for cls in projection_classes(settings, names)
        ]
    if as_json:
        echo_json(statuses)
        return
    print_table(
        "projections",
        ("projection", "alias", "documents", "position", "partitions", "lag (events)", "note"),
        [
            (
                s.name,
                s.alias,
                s.documents,
                s.position,
                s.partitions,
                "?" if s.lag is None else s.lag,
                s.note,
            )
            for s in statuses
        ],
    )


@projections.group("dlq")
def dlq() -> None:
    """Dead letters: events a projection could not apply."""


@dlq.command("list")
@click.argument("name")
@click.option("--all", "include_replayed", is_flag=True, help="Also those already replayed.")
@APP_OPTION
@PROJECTIONS_OPTION
@JSON_OPTION
def dlq_list(
    name: str,
    include_replayed: bool,
    app_spec: str | None,
    projections_module: str | None,
    as_json: bool,
) -> None:
    """The dead letters of a projection, with the reason each failed."""
    settings = load_settings(app=app_spec, projections=projections_module)
    (cls,) = projection_classes(settings, [name])
    topic = DeadLetterTopic(settings, application_name(settings), cls.name)
    with errors_as_messages():
        letters, _ = topic.pending(include_replayed=include_replayed)
    rows = [
        {
            "offset": letter.offset,
            "event_type": letter.headers.get("event_type", b"").decode(),
            "position": letter.headers.get("position", b"").decode(),
            "source": letter.source,
            "handler": letter.headers.get("dlq.handler", b"").decode(),
            "error": letter.error,
        }
        for letter in letters
    ]
    if as_json:
        echo_json(rows)
        return
    print_table(
        f"dead letters of {name!r} ({topic.topic})",
        ("offset", "event", "position", "from", "handler", "error"),
        [tuple(row.values()) for row in rows],
    )


@dlq.command("replay")
@click.argument("name")
@APP_OPTION
@PROJECTIONS_OPTION
def dlq_replay(name: str, app_spec: str | None, projections_module: str | None) -> None:
    """Apply a projection's dead letters again, after the handler was fixed."""
    settings = load_settings(app=app_spec, projections=projections_module)
    (cls,) = projection_classes(settings, [name])
    with errors_as_messages():
        result = replay_dead_letters(settings, application_name(settings), cls())
    click.echo(f"replayed {result.replayed} dead letters; {result.failed_again} failed again")
    if result.failed_again:
        raise SystemExit(1)
