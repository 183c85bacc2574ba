"""Query handlers in plain Python (no HTTP): typed answers, aggregations, freshness."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cqrskit import CommandBus, Settings
from cqrskit.errors import StaleRead
from cqrskit.queries import Page
from cqrskit.runtime import Runtime
from examples.shop import CancelOrder, OrderLine, PlaceOrder, ShopApp, handlers
from examples.shop.queries import ListOrders, OrderById, OrderStats, queries
from projections import OrderSummary
from tests.integration.projections.conftest import Pipeline, pipeline

__all__ = ["pipeline"]


def test_queries_answer_typed_views_from_python(pipeline: Pipeline) -> None:
    pipeline.start_relay()
    pipeline.start_worker("order_summaries")
    settings: Settings = pipeline.settings
    line = OrderLine(sku="tea", quantity=1, unit_price=Decimal("2.00"))
    with ShopApp(settings) as app:
        bus = CommandBus(app, handlers)
        placed = [bus.dispatch(PlaceOrder(customer_id=f"c{i % 3}", lines=[line])) for i in range(9)]
        last = bus.dispatch(CancelOrder(order_id=placed[0].aggregate_id, reason="no"))
    query_bus = Runtime(settings).query_bus(queries)
    # The worker process may still be starting: wait as long as that can take
    # on a loaded machine (the test is about what a fresh answer holds).
    first = OrderById(order_id=placed[0].aggregate_id)
    order = query_bus.ask(first, min_position=last.position, wait=120)
    assert isinstance(order.value, OrderSummary)
    assert order.value.status == "cancelled"
    assert not order.stale
    page = query_bus.ask(ListOrders(customer_id="c1", sort="placed_at")).value
    assert isinstance(page, Page)
    assert [o.customer_id for o in page.items] == ["c1"] * 3
    stats = query_bus.ask(OrderStats()).value
    assert stats == {
        "placed": {"orders": 8, "total": 16.0},
        "cancelled": {"orders": 1, "total": 2.0},
    }
    with pytest.raises(StaleRead):
        query_bus.ask(OrderById(order_id=placed[1].aggregate_id), min_position=10**9, wait=0.2)
    flagged = query_bus.ask(
        OrderById(order_id=placed[1].aggregate_id), min_position=10**9, wait=0.2, on_stale="flag"
    )
    assert flagged.stale
    assert flagged.value.customer_id == "c1"
