"""Hostile command payloads get validation errors with field paths, and store nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqrskit import CommandBus, CommandRejected, CqrskitError
from examples.shop import ShopApp, handlers
from tests.hostile import payloads

COMMANDS = {name: list(cls.model_fields) for name, cls in handlers._by_name.items()}


@st.composite
def command_and_payload(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    return name, draw(payloads(COMMANDS[name]))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(command_and_payload())
def test_parsing_refuses_with_field_paths_or_accepts(case: tuple[str, Any]) -> None:
    name, payload = case
    refused: CommandRejected | None = None
    try:
        command = handlers.parse(name, payload)
    except CommandRejected as exc:
        refused = exc
    if refused is None:
        assert type(command).__name__ == name
        return
    assert refused.errors, "a refusal names at least one field"
    assert all(isinstance(e.path, str) and e.message for e in refused.errors)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(command_and_payload())
def test_a_refused_command_stores_nothing(case: tuple[str, Any]) -> None:
    app = ShopApp(persistence="memory")
    bus = CommandBus(app, handlers)
    name, payload = case
    try:
        bus.dispatch(handlers.parse(name, payload))
    except CqrskitError:
        # Refused by validation, or by the domain (unknown aggregate, a rule):
        # either way, nothing was appended.
        assert app.recorder.max_notification_id() in (None, 0)
