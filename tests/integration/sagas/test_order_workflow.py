"""The order workflow on the real stack: PostgreSQL, Kafka, a saga runner process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from uuid import UUID

import pytest

from cqrskit import CommandBus, Settings
from cqrskit.adapters.postgres.reader import read_envelopes
from cqrskit.adapters.postgres.saga_store import PostgresSagaStore
from cqrskit.sagas import SagaInstance
from examples.shop import (
    AuthorisePayment,
    InventoryItem,
    Order,
    OrderLine,
    PlaceOrder,
    RefusePayment,
    RegisterItem,
    ShopApp,
    handlers,
)
from tests.integration.conftest import REPO_ROOT
from tests.integration.projections.conftest import Pipeline
from tests.integration.relay.conftest import wait_until
from tests.integration.sagas.conftest import Runner

SAGA = "order_workflow"


@pytest.fixture
def shop(pipeline: Pipeline) -> Iterator[tuple[Pipeline, Runner, CommandBus, PostgresSagaStore]]:
    pipeline.start_relay()
    runner = Runner(pipeline)
    store = PostgresSagaStore(pipeline.settings, "shop")
    with ShopApp(pipeline.settings) as app:
        try:
            yield pipeline, runner, CommandBus(app, handlers), store
        finally:
            runner.stop()


def place(bus: CommandBus, item: UUID, quantity: int = 2) -> UUID:
    line = OrderLine(sku="tea", quantity=quantity, unit_price=Decimal("3.00"), item_id=item)
    return bus.dispatch(PlaceOrder(customer_id="ada", lines=[line])).aggregate_id


def instance_in(store: PostgresSagaStore, order: UUID, *steps: str) -> SagaInstance | None:
    found = store.load(SAGA, str(order))
    return found if found is not None and found.state.get("step") in steps else None


def events_of(settings: Settings) -> Counter[tuple[str, str]]:
    """(event type, order id) -> how often, over the whole store."""
    counts: Counter[tuple[str, str]] = Counter()
    for event in read_envelopes(settings, "shop"):
        order = event.payload.get("order_id") or str(event.aggregate_id)
        counts[(event.event_type, str(order))] += 1
    return counts


def reserved_order(runner: Runner, bus: CommandBus, store: PostgresSagaStore) -> tuple[UUID, UUID]:
    """Start the runner, place an order for 2 of an item, and wait until its stock is held."""
    runner.start()
    item = bus.dispatch(RegisterItem(sku="tea", name="tea", quantity=10)).aggregate_id
    order = place(bus, item)
    wait_until(lambda: instance_in(store, order, "awaiting payment"), 60, "stock reserved")
    return item, order


def test_the_happy_path_confirms_the_order(
    shop: tuple[Pipeline, Runner, CommandBus, PostgresSagaStore],
) -> None:
    pipeline, runner, bus, store = shop
    item, order = reserved_order(runner, bus, store)
    bus.dispatch(AuthorisePayment(order_id=order, amount=Decimal("6.00")))
    done = wait_until(lambda: instance_in(store, order, "confirmed"), 60, "the order confirmed")
    assert done.status == "done"
    assert bus.application.repository.get(order).status == "paid"
    assert bus.application.repository.get(item).reservations == {str(order): 2}
    assert store.deadlines(SAGA, str(order)) == {}
    shown = subprocess.run(
        [sys.executable, "-m", "cqrskit.cli", "sagas", "show", SAGA, str(order), "--json"],
        env={**pipeline.env(), "CQRSKIT_SAGAS": "tests.integration.sagas.quick"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    kinds = [h["kind"] for h in json.loads(shown.stdout)["history"]]
    assert kinds[0] == "started"
    assert kinds[-1] == "done"


def test_a_refused_payment_releases_the_stock_and_cancels_the_order(
    shop: tuple[Pipeline, Runner, CommandBus, PostgresSagaStore],
) -> None:
    _pipeline, runner, bus, store = shop
    item, order = reserved_order(runner, bus, store)
    bus.dispatch(RefusePayment(order_id=order, reason="card declined"))
    failed = wait_until(lambda: instance_in(store, order, "payment refused"), 60, "compensation")
    assert failed.status == "failed"
    assert bus.application.repository.get(order).status == "cancelled"
    assert bus.application.repository.get(item).reservations == {}


def test_a_payment_deadline_cancels_the_order_even_when_due_while_the_runner_was_down(
    shop: tuple[Pipeline, Runner, CommandBus, PostgresSagaStore],
) -> None:
    _pipeline, runner, bus, store = shop
    item, order = reserved_order(runner, bus, store)
    runner.kill9()
    due = store.deadlines(SAGA, str(order))["payment"]
    wait_until(lambda: store.due(SAGA), 30, f"the deadline (due {due}) to pass")
    assert instance_in(store, order, "awaiting payment"), "nothing fires it while down"
    runner.start()
    failed = wait_until(lambda: instance_in(store, order, "payment overdue"), 60, "the deadline")
    assert failed.status == "failed"
    assert bus.application.repository.get(order).status == "cancelled"
    assert bus.application.repository.get(item).reservations == {}


def test_a_runner_killed_mid_workflow_finishes_it_with_no_command_applied_twice(
    shop: tuple[Pipeline, Runner, CommandBus, PostgresSagaStore],
) -> None:
    pipeline, runner, bus, store = shop
    runner.sagas = "examples.shop.workflow"  # payment within 15 minutes: no deadline fires here
    item = bus.dispatch(RegisterItem(sku="tea", name="tea", quantity=1000)).aggregate_id
    orders = [place(bus, item, quantity=1) for _ in range(40)]
    runner.start()
    wait_until(lambda: len(store.instances(SAGA)) >= 10, 60, "the runner to be mid-way")
    runner.kill9()
    runner.start()
    for order in orders:
        wait_until(lambda o=order: instance_in(store, o, "awaiting payment"), 120, "reservations")
    runner.kill9()
    for order in orders:
        bus.dispatch(AuthorisePayment(order_id=order, amount=Decimal("3.00")))
    runner.start()
    for order in orders:
        wait_until(lambda o=order: instance_in(store, o, "confirmed"), 120, "every order confirmed")
    counts = events_of(pipeline.settings)
    for order in orders:
        assert counts[("InventoryItem.Reserved", str(order))] == 1
        assert counts[("Order.Paid", str(order))] == 1
    reserved = bus.application.repository.get(item)
    assert isinstance(reserved, InventoryItem)
    assert len(reserved.reservations) == len(orders)
    assert all(isinstance(bus.application.repository.get(o), Order) for o in orders)
