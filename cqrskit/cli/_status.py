"""``cqrskit status``: the whole pipeline on one screen."""

from __future__ import annotations

from dataclasses import asdict

import click

from cqrskit.cli._common import (
    APP_OPTION,
    JSON_OPTION,
    PROJECTIONS_OPTION,
    application_name,
    echo_json,
    errors_as_messages,
    fail_with_first,
    load_settings,
    print_table,
    projection_classes,
)
from cqrskit.observability import STAGES
from cqrskit.projections import ProjectionStatus, StageLatency
from cqrskit.relay import RelayStatus
from cqrskit.runtime import Runtime


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


@click.command()
@click.argument("names", nargs=-1)
@APP_OPTION
@PROJECTIONS_OPTION
@JSON_OPTION
def status(
    names: tuple[str, ...], app_spec: str | None, projections_module: str | None, as_json: bool
) -> None:
    """The relay's lag, and each projection's lag and per-stage latency (p50/p99).

    Stages: append to publish (the relay), publish to applied (the worker),
    applied to searchable (Elasticsearch's refresh), over the recent events
    of the projection's running workers. Times are in milliseconds.
    """
    settings = load_settings(app=app_spec, projections=projections_module)
    app_name = application_name(settings)
    classes = projection_classes(settings, names)
    with errors_as_messages():
        runtime = Runtime(settings)
        relay = runtime.relay_status(app_name)
        rows = [
            (runtime.projection_status(app_name, cls()), runtime.stage_latencies(cls.name))
            for cls in classes
        ]
    if as_json:
        echo_json(
            {
                "relay": asdict(relay),
                "projections": [
                    {**asdict(state), "stages": [asdict(s) for s in stages]}
                    for state, stages in rows
                ],
            }
        )
    else:
        _print_tables(app_name, relay, rows)
    fail_with_first(state.lag_error for state, _ in rows)


def _print_tables(
    app_name: str, relay: RelayStatus, rows: list[tuple[ProjectionStatus, list[StageLatency]]]
) -> None:
    print_table(
        f"relay of {app_name}",
        ("position", "store head", "lag (events)", "lag (s)", "active instance", "last error"),
        [
            (
                relay.position,
                relay.head,
                relay.lag_events,
                f"{relay.lag_seconds:.1f}",
                relay.active_instance or "none",
                relay.last_error or "none",
            )
        ],
    )
    headers = ["projection", "position", "lag (events)"]
    for stage in STAGES:
        label = stage.replace("_to_", " → ").replace("_", " ")
        headers += [f"{label} p50", f"{label} p99"]
    headers.append("samples")
    table_rows = []
    for state, stages in rows:
        cells: list[object] = [state.name, state.position, "?" if state.lag is None else state.lag]
        for latency in stages:
            cells += [_ms(latency.p50), _ms(latency.p99)]
        cells.append(max((s.samples for s in stages), default=0))
        table_rows.append(tuple(cells))
    print_table("projections: latency per stage (ms)", tuple(headers), table_rows)
