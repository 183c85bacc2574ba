"""Query handlers in plain Python (no HTTP): typed answers, aggregations, freshness.

The same handlers are served by the blocking bus and the awaited one.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from cqrskit import CommandBus, Settings
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.errors import StaleRead
from cqrskit.queries import Page
from cqrskit.runtime import Runtime
from cqrskit.topology import IndexNames
from examples.shop import CancelOrder, OrderLine, PlaceOrder, ShopApp, handlers
from examples.shop.queries import ListOrders, OrderById, OrderStats, StatusStats, queries
from projections import OrderSummary
from tests.integration.projections.conftest import Pipeline, pipeline
from tests.processes import wait_until

__all__ = ["pipeline"]


def test_queries_answer_typed_views_from_python(pipeline: Pipeline) -> None:
    pipeline.start_relay()
    pipeline.start_worker("order_summaries")
    settings: Settings = pipeline.settings
    # Only the worker's own refreshes make writes searchable here: no
    # periodic refresh, and no refresh on the first search of an idle shard.
    es = es_backend.client(settings)
    alias = IndexNames.of(settings).alias("order_summaries")
    wait_until(lambda: es.indices.exists_alias(name=alias), 120, "the worker's index")
    es.indices.put_settings(index=alias, settings={"index": {"refresh_interval": "-1"}})
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
    assert order.fresh
    assert not order.stale
    assert order.behind == 0
    # A search (not a get by id) after the wait has the write: the worker
    # made it searchable before its checkpoint said so; nobody refreshed.
    cancelled = query_bus.ask(ListOrders(status="cancelled"), min_position=last.position).value
    assert [o.order_id for o in cancelled.items] == [str(placed[0].aggregate_id)]
    page = query_bus.ask(ListOrders(customer_id="c1", sort="placed_at")).value
    assert isinstance(page, Page)
    assert [o.customer_id for o in page.items] == ["c1"] * 3
    stats = query_bus.ask(OrderStats()).value
    assert stats == {
        "placed": StatusStats(orders=8, total=16.0),
        "cancelled": StatusStats(orders=1, total=2.0),
    }
    with pytest.raises(StaleRead):
        query_bus.ask(OrderById(order_id=placed[1].aggregate_id), min_position=10**9, wait=0.2)
    flagged = query_bus.ask(
        OrderById(order_id=placed[1].aggregate_id), min_position=10**9, wait=0.2, on_stale="flag"
    )
    assert flagged.stale
    assert 0 < flagged.behind <= 10**9 - last.position
    assert flagged.value.customer_id == "c1"

    async def awaited() -> tuple[object, ...]:
        bus = Runtime(settings).async_query_bus(queries)
        try:
            fresh = await bus.ask(first, min_position=last.position, wait=60)
            stale = await bus.ask(first, min_position=10**9, wait=0.2, on_stale="flag")
            with pytest.raises(StaleRead):
                await bus.ask(first, min_position=10**9, wait=0.2)
            return fresh.value, fresh.fresh, stale.stale, (await bus.ask(OrderStats())).value
        finally:
            await bus.aclose()

    value, fresh, stale, async_stats = asyncio.run(awaited())
    assert (value, fresh, stale, async_stats) == (order.value, True, True, stats)
    query_bus.close()
