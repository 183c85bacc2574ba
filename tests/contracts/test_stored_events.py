"""The StoredEvents port's contract: the event store read in commit order.

What rebuilds and verification rely on: the head, every event in position
order, and a window ``after < position <= upto``. Runs in memory and on the
real PostgreSQL (a fresh schema per test, events appended by commands).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cqrskit import CommandBus, Settings
from cqrskit.adapters.memory.stored_events import MemoryStoredEvents
from cqrskit.adapters.postgres.reader import PostgresStoredEvents
from cqrskit.envelope import Envelope, EnvelopeMetadata
from cqrskit.projections._ports import StoredEvents
from examples.shop import OrderLine, PlaceOrder, ShopApp, handlers
from tests.integration.conftest import (
    empty_schema_settings,
    postgres_up,
    schema_settings,
    unique_name,
)

__all__ = ["empty_schema_settings", "postgres_up", "schema_settings", "unique_name"]


@dataclass
class Store:
    """A store under test, and a way to append ``n`` events to it (their positions)."""

    events: StoredEvents
    append: Callable[[int], list[int]]


def _memory() -> Store:
    events = MemoryStoredEvents()

    def append(n: int) -> list[int]:
        start = events.head()
        envelopes = [
            Envelope(
                event_id=uuid.uuid4(),
                event_type="Order.Placed",
                event_class="examples.shop.domain:Order.Placed",
                schema_version=1,
                aggregate_id=uuid.uuid4(),
                aggregate_type="Order",
                aggregate_version=1,
                position=start + 1 + i,
                occurred_at=datetime.now(UTC),
                payload={},
                metadata=EnvelopeMetadata(),
            )
            for i in range(n)
        ]
        events.extend(envelopes)
        return [e.position for e in envelopes]

    return Store(events, append)


def _postgres(settings: Settings) -> Store:
    line = OrderLine(sku="tea", quantity=1, unit_price=Decimal("2.00"))

    def append(n: int) -> list[int]:
        with ShopApp(settings) as app:
            bus = CommandBus(app, handlers)
            return [
                bus.dispatch(PlaceOrder(customer_id="c", lines=[line])).position for _ in range(n)
            ]

    return Store(PostgresStoredEvents(settings, "shop"), append)


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "memory":
        return _memory()
    return _postgres(request.getfixturevalue("schema_settings"))


def test_an_empty_store_has_head_zero_and_no_events(store: Store) -> None:
    assert store.events.head() == 0
    assert list(store.events.envelopes()) == []


def test_every_event_comes_in_position_order_up_to_the_head(store: Store) -> None:
    positions = store.append(4)
    assert positions == sorted(positions)
    assert store.events.head() == positions[-1]
    assert [e.position for e in store.events.envelopes()] == positions


def test_a_window_is_after_exclusive_and_upto_inclusive(store: Store) -> None:
    positions = store.append(5)
    window = store.events.envelopes(after=positions[0], upto=positions[3])
    assert [e.position for e in window] == positions[1:4]
    assert list(store.events.envelopes(after=positions[-1])) == []
