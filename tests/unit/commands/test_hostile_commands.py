"""Hostile command payloads get validation errors with field paths, and store nothing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqrskit import CommandBus, CommandRejected, CqrskitError
from examples.shop import ShopApp, handlers
from tests.hostile import SHOP_COMMANDS, nothing_where_something_is_meant, payloads


def test_every_shop_command_has_a_valid_example() -> None:
    assert sorted(SHOP_COMMANDS) == sorted(handlers.command_types)
    for name, example in SHOP_COMMANDS.items():
        handlers.parse(name, example.valid)


@st.composite
def command_and_payload(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(SHOP_COMMANDS)))
    return name, draw(payloads(SHOP_COMMANDS[name]))


@st.composite
def command_with_nothing_where_something_is_meant(
    draw: st.DrawFn,
) -> tuple[str, tuple[str | int, ...], Any]:
    name = draw(st.sampled_from(sorted(SHOP_COMMANDS)))
    path, payload = draw(nothing_where_something_is_meant(SHOP_COMMANDS[name]))
    return name, path, payload


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(command_with_nothing_where_something_is_meant())
def test_empty_blank_null_and_non_positive_values_are_rejected_naming_the_field(
    case: tuple[str, tuple[str | int, ...], Any],
) -> None:
    """Issue 15, hole 9: "", "  ", [], {}, 0, -1 and null where a value is meant."""
    name, path, payload = case
    with pytest.raises(CommandRejected) as refused:
        handlers.parse(name, payload)
    top = str(path[0]) if path else ""
    assert any(e.path.startswith(top) for e in refused.value.errors), refused.value.errors


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
