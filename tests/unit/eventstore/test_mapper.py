"""Stored JSON, and upcasting events stored under an older schema version."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from cqrskit import Aggregate, PermanentError, Upcasters, event
from cqrskit.eventstore import OrjsonTranscoder, PydanticMapper


class Account(Aggregate):
    @event("Opened")
    def __init__(self, owner: str, currency: str) -> None:
        self.owner = owner
        self.currency = currency


Account.Opened.schema_version = 2  # type: ignore[attr-defined]
upcasters = Upcasters()


@upcasters.register(Account.Opened, from_version=1)  # type: ignore[attr-defined]
def add_currency(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "currency": "EUR"}


def test_stored_state_is_plain_json_with_metadata() -> None:
    mapper = PydanticMapper(OrjsonTranscoder(), upcasters)
    (opened,) = Account(owner="ada", currency="GBP").collect_events()
    stored = mapper.to_stored_event(opened)
    state = orjson.loads(stored.state)
    assert state["owner"] == "ada"
    assert state["metadata"]["schema_version"] == 2
    assert "originator_id" not in state
    assert mapper.to_domain_event(stored) == opened


def test_an_old_event_is_upcast_when_read() -> None:
    mapper = PydanticMapper(OrjsonTranscoder(), upcasters)
    (opened,) = Account(owner="ada", currency="GBP").collect_events()
    stored = mapper.to_stored_event(opened)
    old_state = orjson.loads(stored.state)
    del old_state["currency"]
    old_state["metadata"]["schema_version"] = 1
    old = StoredEvent(stored.originator_id, 1, stored.topic, orjson.dumps(old_state))
    read = mapper.to_domain_event(old)
    assert read.currency == "EUR"  # type: ignore[attr-defined]
    assert read.metadata.schema_version == 2  # type: ignore[attr-defined]


def test_a_missing_upcaster_is_a_clear_error() -> None:
    mapper = PydanticMapper(OrjsonTranscoder(), Upcasters())
    (opened,) = Account(owner="ada", currency="GBP").collect_events()
    stored = mapper.to_stored_event(opened)
    state = orjson.loads(stored.state)
    state["metadata"]["schema_version"] = 1
    old = StoredEvent(stored.originator_id, 1, stored.topic, orjson.dumps(state))
    with pytest.raises(PermanentError, match="no upcaster from version 1"):
        mapper.to_domain_event(old)


def test_an_upcaster_is_registered_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        upcasters.register(Account.Opened, from_version=1)(add_currency)  # type: ignore[attr-defined]
