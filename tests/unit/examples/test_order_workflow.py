"""The shop's order workflow, given events, then commands: no services."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from cqrskit import CommandBus
from cqrskit.envelope import Envelope
from cqrskit.testing import SagaScenario, stored_envelopes
from examples.shop import (
    AuthorisePayment,
    CancelOrder,
    CapturePayment,
    OrderLine,
    PlaceOrder,
    RefusePayment,
    RegisterItem,
    ReleaseStock,
    ReserveStock,
    ShopApp,
    handlers,
)
from examples.shop.workflow import OrderWorkflow


class Shop:
    """Real commands on the in-memory store, to get real events for the scenario."""

    def __init__(self) -> None:
        self.app = ShopApp(persistence="memory")
        self.bus = CommandBus(self.app, handlers)
        self.seen = 0

    def item(self, quantity: int = 10) -> UUID:
        return self.bus.dispatch(
            RegisterItem(sku="tea", name="tea", quantity=quantity)
        ).aggregate_id

    def new_events(self) -> list[Envelope]:
        events = stored_envelopes(self.app, after=self.seen)
        self.seen += len(events)
        return events


def placed_order(shop: Shop, item: UUID) -> UUID:
    line = OrderLine(sku="tea", quantity=2, unit_price=Decimal("3.00"), item_id=item)
    return shop.bus.dispatch(PlaceOrder(customer_id="ada", lines=[line])).aggregate_id


def test_a_placed_order_reserves_its_stock_then_waits_for_payment() -> None:
    shop = Shop()
    item = shop.item()
    shop.new_events()
    order = placed_order(shop, item)
    saga = SagaScenario(OrderWorkflow()).when(*shop.new_events())
    assert saga.sent == [ReserveStock(item_id=item, order_id=order, quantity=2)]
    for command in saga.sent:
        shop.bus.dispatch(command)
    saga.when(*shop.new_events())
    assert saga.instance(str(order)).state["step"] == "awaiting payment"
    assert saga.deadlines(str(order)) == {"payment"}


def test_the_happy_path_captures_the_payment_and_ends() -> None:
    shop = Shop()
    item = shop.item()
    order = placed_order(shop, item)
    saga = SagaScenario(OrderWorkflow()).given(*shop.new_events())
    shop.bus.dispatch(ReserveStock(item_id=item, order_id=order, quantity=2))
    payment = shop.bus.dispatch(AuthorisePayment(order_id=order, amount=Decimal("6.00")))
    saga.when(*shop.new_events())
    assert saga.sent == [CapturePayment(payment_id=payment.aggregate_id)]
    assert saga.deadlines(str(order)) == set()
    shop.bus.dispatch(saga.sent[0])
    saga.when(*shop.new_events())
    assert saga.instance(str(order)).status == "done"


# --8<-- [start:scenario]
def test_a_refused_payment_releases_the_stock_and_cancels_the_order() -> None:
    shop = Shop()
    item = shop.item()
    order = placed_order(shop, item)
    saga = SagaScenario(OrderWorkflow()).given(*shop.new_events())
    shop.bus.dispatch(ReserveStock(item_id=item, order_id=order, quantity=2))
    shop.bus.dispatch(RefusePayment(order_id=order, reason="card declined"))
    saga.when(*shop.new_events())
    assert saga.sent == [
        ReleaseStock(item_id=item, order_id=order),
        CancelOrder(order_id=order, reason="the order workflow failed"),
    ]
    assert saga.instance(str(order)).status == "failed"


# --8<-- [end:scenario]


def test_no_payment_in_time_compensates_in_reverse_order() -> None:
    shop = Shop()
    item = shop.item()
    order = placed_order(shop, item)
    saga = SagaScenario(OrderWorkflow()).given(*shop.new_events())
    shop.bus.dispatch(ReserveStock(item_id=item, order_id=order, quantity=2))
    saga.given(*shop.new_events())
    saga.when_deadline(str(order), "payment")
    assert [type(c) for c in saga.sent] == [ReleaseStock, CancelOrder]
    assert saga.instance(str(order)).status == "failed"
    assert saga.deadlines(str(order)) == set()


def test_a_refused_reservation_cancels_the_order() -> None:
    shop = Shop()
    item = shop.item()
    placed_order(shop, item)
    saga = SagaScenario(OrderWorkflow(), refuse=["ReserveStock"]).when(*shop.new_events())
    assert [type(c) for c in saga.sent] == [CancelOrder]


def test_an_event_seen_twice_sends_nothing_new() -> None:
    shop = Shop()
    item = shop.item()
    placed_order(shop, item)
    events = shop.new_events()
    saga = SagaScenario(OrderWorkflow()).when(*events)
    assert len(saga.sent) == 1
    saga.when(*events)
    assert saga.sent == []
