"""The shop's behaviour, as given/when/then scenarios on the in-memory store."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from cqrskit import AggregateNotFound, CommandRejected, RuleViolated, UnknownCommand
from cqrskit.commands import Command
from cqrskit.testing import Scenario, expect
from examples.shop import (
    AuthorisePayment,
    CancelOrder,
    CapturePayment,
    InventoryItem,
    Order,
    OrderLine,
    Payment,
    PlaceOrder,
    ReleaseStock,
    ReserveStock,
    RestockItem,
    ShopApp,
    handlers,
)

LINES = [OrderLine(sku="tea", quantity=2, unit_price=Decimal("3.50"))]


def scenario() -> Scenario:
    return Scenario(handlers, ShopApp)


def placed_order() -> Order:
    return Order(customer_id="ada", lines=LINES)


def test_placing_an_order_records_the_lines() -> None:
    s = scenario().when(PlaceOrder(customer_id="ada", lines=LINES))
    s.then(expect(Order.Placed, customer_id="ada", lines=LINES))
    assert s.result.version == 1


def test_an_order_without_lines_is_rejected_before_anything_is_stored() -> None:
    with pytest.raises(CommandRejected) as caught:
        handlers.parse("PlaceOrder", {"customer_id": "ada", "lines": []})
    assert [e.path for e in caught.value.errors] == ["lines"]
    # Even past the command's schema, the aggregate itself refuses it.
    with pytest.raises(RuleViolated):
        Order(customer_id="ada", lines=[])


def test_parse_names_every_bad_field_path() -> None:
    with pytest.raises(CommandRejected) as caught:
        handlers.parse(
            "PlaceOrder",
            {"customer_id": "ada", "lines": [{"sku": "", "quantity": 0, "unit_price": "x"}]},
        )
    paths = {e.path for e in caught.value.errors}
    assert paths == {"lines.0.sku", "lines.0.quantity", "lines.0.unit_price"}


def test_an_unknown_command_type_is_named() -> None:
    with pytest.raises(UnknownCommand, match="ShipOrder"):
        handlers.parse("ShipOrder", {})

    class Unregistered(Command):
        pass

    scenario().when(Unregistered()).then_raises(UnknownCommand, "Unregistered")


def test_cancelling_a_placed_order() -> None:
    order = placed_order()
    scenario().given(*order.collect_events()).when(
        CancelOrder(order_id=order.id, reason="changed my mind")
    ).then(
        expect(Order.Cancelled, reason="changed my mind", customer_id="ada", total=Decimal("7.00"))
    )


def test_a_cancelled_order_cannot_be_cancelled_again() -> None:
    order = placed_order()
    order.cancel("first")
    scenario().given(*order.collect_events()).when(
        CancelOrder(order_id=order.id, reason="again")
    ).then_raises(RuleViolated, "cancelled")


def test_cancelling_an_unknown_order_names_its_id() -> None:
    missing = uuid4()
    error = (
        scenario()
        .when(CancelOrder(order_id=missing, reason="x"))
        .then_raises(AggregateNotFound, str(missing))
    )
    assert "Order" in str(error)


def test_stock_is_reserved_only_when_available_and_released_on_cancel() -> None:
    item = InventoryItem(sku="tea", name="Green tea", quantity=3)
    order_id = uuid4()
    history = item.collect_events()
    scenario().given(*history).when(
        ReserveStock(item_id=item.id, order_id=order_id, quantity=2)
    ).then(expect(InventoryItem.Reserved, order_id=order_id, quantity=2))

    item.reserve(order_id, 2)
    history += item.collect_events()
    scenario().given(*history).when(
        ReserveStock(item_id=item.id, order_id=uuid4(), quantity=2)
    ).then_raises(RuleViolated, "only 1 of tea available")
    scenario().given(*history).when(ReleaseStock(item_id=item.id, order_id=order_id)).then(
        expect(InventoryItem.Released, order_id=order_id, quantity=2)
    )
    scenario().given(*history).when(RestockItem(item_id=item.id, quantity=5)).then(
        expect(InventoryItem.Restocked, quantity=5)
    )


def test_a_payment_must_match_the_order_total() -> None:
    order = placed_order()
    scenario().given(*order.collect_events()).when(
        AuthorisePayment(order_id=order.id, amount=Decimal("1.00"))
    ).then_raises(RuleViolated, "totals 7.00")


def test_capturing_a_payment_marks_the_order_paid_in_one_transaction() -> None:
    order = placed_order()
    payment = Payment(order_id=order.id, amount=Decimal("7.00"))
    s = scenario().given(*order.collect_events(), *payment.collect_events())
    s.when(CapturePayment(payment_id=payment.id)).then(
        Payment.Captured, expect(Order.Paid, exact=False, payment_id=payment.id)
    )
    assert s.result.aggregate_id == payment.id
