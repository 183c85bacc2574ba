"""``cqrskit sagas``: run process managers, list their instances, show one."""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any

import click

from cqrskit._loading import load_application_class, load_sagas
from cqrskit.cli._common import (
    APP_OPTION,
    JSON_OPTION,
    METRICS_OPTION,
    SAGAS_OPTION,
    configure_logging,
    echo_json,
    errors_as_messages,
    load_settings,
    on_stop_signals,
    print_table,
    start_metrics,
)
from cqrskit.runtime import Runtime
from cqrskit.sagas import ProcessManager, SagaStore
from cqrskit.settings import Settings


def _saga(settings: Settings, name: str) -> type[ProcessManager[Any]]:
    with errors_as_messages():
        found = load_sagas(settings.sagas)
    if name not in found:
        raise click.ClickException(f"unknown saga {name}; known: {', '.join(found)}")
    return found[name]


def _store(settings: Settings) -> SagaStore:
    with errors_as_messages():
        app_name = load_application_class(settings.app).name
        return Runtime(settings).saga_store(app_name)


@click.group()
def sagas() -> None:
    """Process managers: multi-step workflows driven by events, with compensation."""


@sagas.command("run")
@click.argument("name")
@APP_OPTION
@SAGAS_OPTION
@METRICS_OPTION
def sagas_run(
    name: str, app_spec: str | None, sagas_module: str | None, metrics_port: int | None
) -> None:
    """Run the process manager NAME until SIGTERM: react to events, fire deadlines."""
    settings = load_settings(app=app_spec, sagas=sagas_module, metrics_port=metrics_port)
    manager = _saga(settings, name)()
    configure_logging(settings)
    start_metrics(settings)
    with errors_as_messages():
        application = load_application_class(settings.app)(settings)
        runner = Runtime(settings).saga_runner(application, manager)
    on_stop_signals(runner.stop, "cqrskit.sagas")
    thread = threading.Thread(target=runner.run, name=name)
    thread.start()
    thread.join()
    application.close()


@sagas.command("list")
@click.argument("name")
@click.option(
    "--state", "status", type=click.Choice(["running", "failed", "done"]), help="Only these."
)
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@APP_OPTION
@SAGAS_OPTION
@JSON_OPTION
def sagas_list(
    *,
    name: str,
    status: str | None,
    limit: int,
    app_spec: str | None,
    sagas_module: str | None,
    as_json: bool,
) -> None:
    """The instances of the process manager NAME, newest first."""
    settings = load_settings(app=app_spec, sagas=sagas_module)
    _saga(settings, name)
    with errors_as_messages():
        found = _store(settings).instances(name, status, limit)  # type: ignore[arg-type]
    if as_json:
        echo_json([asdict(i) for i in found])
        return
    print_table(
        f"{name}: {len(found)} instances",
        ("instance", "status", "step", "started", "updated", "version"),
        [
            (
                i.instance_id,
                i.status,
                i.state.get("step", ""),
                i.started_at,
                i.updated_at,
                i.version,
            )
            for i in found
        ],
    )


@sagas.command("show")
@click.argument("name")
@click.argument("instance_id")
@APP_OPTION
@SAGAS_OPTION
@JSON_OPTION
def sagas_show(
    name: str, instance_id: str, app_spec: str | None, sagas_module: str | None, as_json: bool
) -> None:
    """One instance: its state, its history and its pending deadlines."""
    settings = load_settings(app=app_spec, sagas=sagas_module)
    _saga(settings, name)
    store = _store(settings)
    with errors_as_messages():
        instance = store.load(name, instance_id)
        if instance is None:
            raise click.ClickException(f"saga {name} has no instance {instance_id}")
        history = store.history(name, instance_id)
        deadlines = store.deadlines(name, instance_id)
    if as_json:
        echo_json(
            {
                "instance": asdict(instance),
                "history": [asdict(h) for h in history],
                "deadlines": deadlines,
            }
        )
        return
    print_table(
        f"{name} {instance_id}: {instance.status}",
        ("field", "value"),
        [(k, v) for k, v in instance.state.items()],
    )
    print_table(
        "history",
        ("at", "what", "trigger", "detail"),
        [
            (h.at, h.kind, h.trigger, {k: v for k, v in h.detail.items() if k != "state"})
            for h in history
        ],
    )
    print_table("pending deadlines", ("deadline", "due at"), list(deadlines.items()))
