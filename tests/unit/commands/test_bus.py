"""The command bus on the in-memory store: idempotency, metadata, validation."""

from __future__ import annotations

from uuid import uuid4

import pytest

from cqrskit import CommandBus, CommandRejected, EventTooLarge, IdempotencyKeyReused, Settings
from cqrskit.testing import payload_of
from examples.shop import InventoryItem, PlaceOrder, RegisterItem, RestockItem, ShopApp, handlers
from examples.shop.commands import ReserveStock
from tests import topping_up

ORDER = PlaceOrder(customer_id="ada", lines=[{"sku": "tea", "quantity": 1, "unit_price": "2.00"}])


@pytest.fixture
def bus() -> CommandBus:
    return CommandBus(ShopApp(persistence="memory"), handlers)


def test_the_result_names_aggregate_version_and_position(bus: CommandBus) -> None:
    first = bus.dispatch(ORDER)
    second = bus.dispatch(ORDER)
    assert first.version == 1
    assert (first.position, second.position) == (1, 2)
    assert first.aggregate_id != second.aggregate_id


def test_the_same_key_appends_once_and_returns_the_first_result(bus: CommandBus) -> None:
    first = bus.dispatch(ORDER, idempotency_key="k-1")
    again = bus.dispatch(ORDER, idempotency_key="k-1")
    assert again.replayed
    assert not first.replayed
    assert (again.aggregate_id, again.version, again.position) == (
        first.aggregate_id,
        first.version,
        first.position,
    )
    assert bus.application.recorder.max_notification_id() == 1


def test_the_same_key_with_another_command_is_refused(bus: CommandBus) -> None:
    bus.dispatch(ORDER, idempotency_key="k-1")
    other = PlaceOrder(customer_id="bob", lines=ORDER.lines)
    with pytest.raises(IdempotencyKeyReused, match="k-1"):
        bus.dispatch(other, idempotency_key="k-1")
    assert bus.application.recorder.max_notification_id() == 1


def test_events_carry_correlation_causation_and_trace_context(bus: CommandBus) -> None:
    correlation = uuid4()
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    result = bus.dispatch(ORDER, correlation_id=correlation, traceparent=trace)
    order_events = list(bus.application.events.get(result.aggregate_id))
    metadata = order_events[0].metadata  # type: ignore[attr-defined]
    assert metadata.correlation_id == correlation
    assert metadata.causation_id not in (None, correlation)
    assert metadata.traceparent == trace
    assert metadata.schema_version == 1


def test_an_invalid_event_payload_is_a_rejected_command(bus: CommandBus) -> None:
    item = bus.dispatch(RegisterItem(sku="tea", name="Tea", quantity=1))
    # RestockItem's schema allows it, but the event's payload type does not.
    bad = RestockItem.model_construct(item_id=item.aggregate_id, quantity=-5)
    with pytest.raises(CommandRejected) as caught:
        bus.dispatch(bad)
    assert [e.path for e in caught.value.errors] == ["quantity"]
    assert bus.application.recorder.max_notification_id() == 1


def test_a_snapshot_restores_typed_state(bus: CommandBus) -> None:
    item = bus.dispatch(RegisterItem(sku="tea", name="Tea", quantity=1)).aggregate_id
    for _ in range(3):
        bus.dispatch(RestockItem(item_id=item, quantity=2))
    live = bus.application.repository.get(item)
    snapshot = InventoryItem.Snapshot.take(live)
    restored = snapshot.mutate(None)
    assert vars(restored) == vars(live)
    assert restored.available == 7


def test_payload_of_strips_envelope_fields() -> None:
    item = InventoryItem(sku="tea", name="Tea", quantity=1)
    (registered,) = item.collect_events()
    assert payload_of(registered) == {"sku": "tea", "name": "Tea", "quantity": 1}


def test_a_key_is_recorded_when_the_command_changed_nothing() -> None:
    """Issue 15, hole 7b: a retry after the state changed must not act."""
    bus = CommandBus(ShopApp(persistence="memory"), topping_up.handlers)
    item = bus.dispatch(RegisterItem(sku="tea", name="Tea", quantity=5)).aggregate_id
    first = bus.dispatch(topping_up.TopUp(item_id=item, available=5), idempotency_key="top-1")
    assert first.events == 0
    bus.dispatch(ReserveStock(item_id=item, order_id=uuid4(), quantity=3))
    before = bus.application.recorder.max_notification_id()
    again = bus.dispatch(topping_up.TopUp(item_id=item, available=5), idempotency_key="top-1")
    assert (again.replayed, again.events, again.version) == (True, 0, first.version)
    assert bus.application.recorder.max_notification_id() == before


def test_an_event_larger_than_a_kafka_message_is_refused_before_anything_is_stored() -> None:
    settings = Settings.load(max_event_bytes=5_000)
    bus = CommandBus(ShopApp(settings, persistence="memory"), handlers)
    small = bus.dispatch(ORDER)
    lines = [{"sku": f"sku-{n:08}", "quantity": 1, "unit_price": "2.00"} for n in range(100)]
    with pytest.raises(EventTooLarge) as refused:
        bus.dispatch(PlaceOrder(customer_id="ada", lines=lines))
    error = refused.value
    assert isinstance(error, CommandRejected)
    assert not error.transient
    assert (error.command_type, error.event_type, error.limit) == (
        "PlaceOrder",
        "Order.Placed",
        5_000,
    )
    assert error.size > 5_000
    assert f"{error.size:,}-byte" in str(error)
    assert str(error.aggregate_id) in str(error)
    assert bus.application.recorder.max_notification_id() == small.position
