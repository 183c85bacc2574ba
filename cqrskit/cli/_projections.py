"""``cqrskit projections``: list, run, status, dead letters."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from cqrskit.cli._common import (
    APP_OPTION,
    DRY_RUN_OPTION,
    JSON_OPTION,
    METRICS_OPTION,
    PROJECTIONS_OPTION,
    YES_OPTION,
    application_name,
    configure_logging,
    confirm,
    echo_json,
    errors_as_log_lines,
    errors_as_messages,
    fail_with_first,
    load_settings,
    on_stop_signals,
    print_table,
    projection_classes,
    start_metrics,
)
from cqrskit.projections import (
    Projection,
    ProjectionStatus,
    ProjectionWorker,
    RebuildPlan,
    RebuildResult,
)
from cqrskit.runtime import Runtime
from cqrskit.settings import Settings

__all__ = ["projections"]


@dataclass(frozen=True)
class _Named:
    """The one projection a command names, with the settings it was loaded under."""

    settings: Settings
    projection: Projection[Any]

    @property
    def runtime(self) -> Runtime:
        """The composition root that builds the adapters the command needs."""
        return Runtime(self.settings)

    @property
    def app_name(self) -> str:
        """The configured application's name (loads the application class)."""
        return application_name(self.settings)


def _named(name: str, app_spec: str | None = None, projections_module: str | None = None) -> _Named:
    """Load the settings and the projection called ``name`` (a clean error if unknown)."""
    settings = load_settings(app=app_spec, projections=projections_module)
    (cls,) = projection_classes(settings, [name])
    return _Named(settings, cls())


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
@click.argument("names", nargs=-1)
@APP_OPTION
@PROJECTIONS_OPTION
@METRICS_OPTION
def projections_run(
    names: tuple[str, ...],
    app_spec: str | None,
    projections_module: str | None,
    metrics_port: int | None,
) -> None:
    """Run the workers of the named projections (all, if none is named) until SIGTERM.

    Each projection is one Kafka consumer group: start this command several
    times to share a projection's partitions between processes.
    """
    settings = load_settings(
        app=app_spec, projections=projections_module, metrics_port=metrics_port
    )
    app_name = application_name(settings)
    runtime = Runtime(settings)
    classes = projection_classes(settings, names)
    with errors_as_messages():
        workers = [runtime.worker(app_name, cls()) for cls in classes]
    configure_logging(settings)
    start_metrics(settings)

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
        with errors_as_log_lines("cqrskit.projections"):
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
        runtime = Runtime(settings)
        statuses = [
            runtime.projection_status(app_name, cls())
            for cls in projection_classes(settings, names)
        ]
    if as_json:
        echo_json(statuses)
    else:
        _print_statuses(statuses)
    fail_with_first(s.lag_error for s in statuses)


def _print_statuses(statuses: list[ProjectionStatus]) -> None:
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
    named = _named(name, app_spec, projections_module)
    topic = named.runtime.dead_letters(named.app_name, named.projection.name)
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
    named = _named(name, app_spec, projections_module)
    with errors_as_messages():
        result = named.runtime.replay_dead_letters(named.app_name, named.projection)
    click.echo(f"replayed {result.replayed} dead letters; {result.failed_again} failed again")
    if result.failed_again:
        raise SystemExit(1)


class _Rates:
    """Events per second of each phase, from a monotonic clock and the events read.

    A phase's clock starts at its first report, which a rebuild sends
    before it reads anything; counts only grow, so a rate is never negative.
    """

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def __call__(self, phase: str, done: int) -> str:
        now = time.monotonic()
        started = self._started.setdefault(phase, now)
        if done <= 0 or now <= started:
            return ""
        return f"{done / (now - started):,.0f} events/s"


def _rebuild_with_progress(
    named: _Named, *, from_position: int = 0, drop_old: bool = False
) -> RebuildResult:
    app_name = named.app_name
    configure_logging(named.settings)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:
        tasks: dict[str, TaskID] = {}
        rates = _Rates()

        def progress(phase: str, done: int, total: int) -> None:
            done = max(done, 0)
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=max(total, 1), rate="")
            bar.update(
                tasks[phase],
                completed=done,
                total=max(total, done, 1),
                rate=rates(phase, done),
            )

        with errors_as_messages():
            return named.runtime.rebuild(
                app_name,
                named.projection,
                from_position=from_position,
                drop_old=drop_old,
                progress=progress,
            )


def _report(result: RebuildResult) -> None:
    resumed = " (resumed)" if result.resumed else ""
    click.echo(
        f"{result.projection}: {result.index} is in service{resumed}; replayed {result.replayed} "
        f"events from the store, {result.caught_up} from Kafka; previous index: "
        f"{result.previous or 'none'}"
    )
    if result.failures:
        click.echo(f"{result.failures} events failed in handlers; see the log above", err=True)


def _describe(plan: RebuildPlan, *, drop_old: bool = False) -> str:
    """What a rebuild or reset would do, as the end of 'this will ...'."""
    history = (
        f"the events after position {plan.from_position} up to the head, position {plan.head} "
        f"(history up to position {plan.from_position} is left out)"
        if plan.from_position
        else f"the whole event store up to position {plan.head}"
    )
    verb = "go on building" if plan.resumes else "build"
    resumed = " (an interrupted rebuild, resumed with its own positions)" if plan.resumes else ""
    old = plan.serving or "no index"
    fate = f"delete {old}" if drop_old and plan.serving else f"keep {old} for rollback"
    return (
        f"{verb} {plan.target}{resumed} from {history}, put it in service in place of {old}, "
        f"and {fate}"
    )


def _plan_then_confirm(
    named: _Named, *, from_position: int, drop_old: bool, yes: bool, dry_run: bool
) -> bool:
    """Print or confirm what a rebuild would do; True if it should go ahead."""
    with errors_as_messages():
        plan = named.runtime.rebuild_plan(
            named.app_name, named.projection, from_position=from_position
        )
    action = _describe(plan, drop_old=drop_old)
    if dry_run:
        click.echo(f"{named.projection.name}: would {action}")
        return False
    if from_position or drop_old:  # leaves history or an index behind: ask first
        confirm(action, yes=yes)
    return True


@projections.command("rebuild")
@click.argument("name")
@click.option("--drop-old", is_flag=True, help="Delete the previous index after the swap (asks).")
@YES_OPTION
@DRY_RUN_OPTION
@APP_OPTION
@PROJECTIONS_OPTION
def projections_rebuild(
    *,
    name: str,
    drop_old: bool,
    yes: bool,
    dry_run: bool,
    app_spec: str | None,
    projections_module: str | None,
) -> None:
    """Rebuild a read model from the event store into a new index, then swap.

    Queries are served by the old index until one atomic alias swap; the
    live workers keep running. Interrupted, it resumes when run again. With
    --drop-old it asks first (or needs --yes without a terminal).
    """
    named = _named(name, app_spec, projections_module)
    if _plan_then_confirm(named, from_position=0, drop_old=drop_old, yes=yes, dry_run=dry_run):
        _report(_rebuild_with_progress(named, drop_old=drop_old))


@projections.command("reset")
@click.argument("name")
@click.option(
    "--to-position",
    "position",
    type=click.IntRange(min=0),
    required=True,
    help="Build from the events after this position (at most the store's head).",
)
@YES_OPTION
@DRY_RUN_OPTION
@APP_OPTION
@PROJECTIONS_OPTION
def projections_reset(
    *,
    name: str,
    position: int,
    yes: bool,
    dry_run: bool,
    app_spec: str | None,
    projections_module: str | None,
) -> None:
    """Rebuild a read model from the events after a position only.

    Like rebuild (a new index, an atomic swap, the old index kept for
    rollback), but the history before --to-position is left out. A position
    past the store's head is refused. Asks first on a terminal; without one
    it needs --yes.
    """
    named = _named(name, app_spec, projections_module)
    if _plan_then_confirm(named, from_position=position, drop_old=False, yes=yes, dry_run=dry_run):
        _report(_rebuild_with_progress(named, from_position=position))


@projections.command("rollback")
@click.argument("name")
@YES_OPTION
@DRY_RUN_OPTION
@APP_OPTION
@PROJECTIONS_OPTION
def projections_rollback(
    name: str, yes: bool, dry_run: bool, app_spec: str | None, projections_module: str | None
) -> None:
    """Serve the index from before the last rebuild again (caught up first).

    Asks first on a terminal; without one it needs --yes.
    """
    named = _named(name, app_spec, projections_module)
    app_name = named.app_name
    with errors_as_messages():
        serving, previous = named.runtime.rollback_plan(app_name, named.projection)
    action = (
        f"serve {previous} again in place of {serving or 'no index'}, caught up from Kafka first"
    )
    if dry_run:
        click.echo(f"{name}: would {action}")
        return
    confirm(action, yes=yes)
    with errors_as_messages():
        index = named.runtime.rollback(app_name, named.projection)
    click.echo(f"{name}: {index} is in service again")


@projections.command("prune")
@click.argument("name")
@YES_OPTION
@DRY_RUN_OPTION
@PROJECTIONS_OPTION
def projections_prune(name: str, yes: bool, dry_run: bool, projections_module: str | None) -> None:
    """Delete the old indices of a read model (not the one in service).

    Asks first on a terminal; without one it needs --yes.
    """
    named = _named(name, projections_module=projections_module)
    with errors_as_messages():
        doomed = named.runtime.prune_plan(named.projection)
    if not doomed:
        click.echo(f"{name}: nothing to delete")
        return
    action = f"delete {', '.join(doomed)} (no rollback to them afterwards)"
    if dry_run:
        click.echo(f"{name}: would {action}")
        return
    confirm(action, yes=yes)
    with errors_as_messages():
        dropped = named.runtime.prune(named.projection)
    click.echo(f"{name}: deleted {', '.join(dropped) if dropped else 'nothing'}")


@projections.command("verify")
@click.argument("name")
@APP_OPTION
@PROJECTIONS_OPTION
@JSON_OPTION
def projections_verify(
    name: str, app_spec: str | None, projections_module: str | None, as_json: bool
) -> None:
    """Compare the live read model with a fresh fold of the event store.

    Prints every document that is missing, extra, different or unexplained
    (a position no event of the store gave it), and exits 1 on any drift.
    Documents the live worker changes meanwhile are compared with a fold up
    to their own position. Run it when the projection has caught up.
    """
    named = _named(name, app_spec, projections_module)
    with errors_as_messages():
        report = named.runtime.verify(named.app_name, named.projection)
    if as_json:
        echo_json(report)
    else:
        if report.drift:
            print_table(
                f"{name}: {len(report.drift)} documents drifted",
                ("document", "drift", "fields"),
                [(d.doc_id, d.kind, ", ".join(d.fields)) for d in report.drift],
            )
        click.echo(
            f"{name}: compared {report.compared} documents with a fold of the store up to "
            f"position {report.head}; {len(report.drift)} drifted; {report.newer} changed by "
            "newer events, each compared with a fold up to its own position"
        )
    if not report.ok:
        raise SystemExit(1)
