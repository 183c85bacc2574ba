"""A saga runner on its ports alone: events in from a subscription, commands out, no services."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import ClassVar, TypeVar

import pytest

from cqrskit import CommandBus
from cqrskit.adapters.memory.subscription import MemorySubscription, MemoryTopics
from cqrskit.envelope import HEADER_EVENT_TYPE, encode
from cqrskit.sagas import SagaRunner
from cqrskit.subscription import Partition
from cqrskit.testing import MemorySagaStore
from examples.shop import OrderLine, PlaceOrder, ShopApp, handlers
from examples.shop.workflow import OrderWorkflow

T = TypeVar("T")
TOPIC = "shop.Order"


class HastyOrderWorkflow(OrderWorkflow):
    """Customers have a fraction of a second to pay."""

    payment_timeout: ClassVar[float] = 0.3


def wait_for(find: Callable[[], T | None], what: str, seconds: float = 10) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def app() -> Iterator[ShopApp]:
    application = ShopApp(persistence="memory")
    try:
        yield application
    finally:
        application.close()


def publish_all(app: ShopApp, topics: MemoryTopics) -> None:
    """What the relay would do: every stored event onto the topic, as an envelope."""
    for n in app.recorder.select_notifications(start=1, limit=1000):
        value, event_type, _, _ = encode(
            position=n.id,
            aggregate_id=n.originator_id,
            aggregate_version=n.originator_version,
            topic=n.topic,
            state=n.state,
        )
        topics.append(TOPIC, 0, value, {HEADER_EVENT_TYPE: event_type.encode()})


def test_a_runner_reacts_records_its_position_commits_and_fires_deadlines(app: ShopApp) -> None:
    line = OrderLine(sku="tea", quantity=1, unit_price=Decimal("3.00"))
    order = CommandBus(app, handlers).dispatch(PlaceOrder(customer_id="ada", lines=[line]))
    topics, store = MemoryTopics(partitions=1), MemorySagaStore()
    publish_all(app, topics)
    subscription = MemorySubscription(topics, "saga", [TOPIC])
    bus = CommandBus(app, handlers)
    runner = SagaRunner(HastyOrderWorkflow(), bus, store, subscription)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        instance = wait_for(
            lambda: (
                (i := store.load("order_workflow", str(order.aggregate_id)))
                and i.status == "failed"
                and i
            ),
            "the payment deadline to fail the instance",
        )
    finally:
        runner.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert instance.state["step"] == "payment overdue"
    assert runner.handled == 1
    assert store.positions("order_workflow") == {f"{TOPIC}/0": 1}
    assert topics.committed("saga", Partition(TOPIC, 0)) == 1
    assert app.repository.get(order.aggregate_id).status == "cancelled", "compensated"


def test_a_runner_starts_from_the_positions_it_recorded(app: ShopApp) -> None:
    line = OrderLine(sku="tea", quantity=1, unit_price=Decimal("3.00"))
    bus = CommandBus(app, handlers)
    seen, unseen = (bus.dispatch(PlaceOrder(customer_id=c, lines=[line])) for c in ("ada", "bo"))
    topics, store = MemoryTopics(partitions=1), MemorySagaStore()
    publish_all(app, topics)
    store.record_position("order_workflow", f"{TOPIC}/0", 1)  # the first was seen before
    subscription = MemorySubscription(topics, "saga", [TOPIC])
    runner = SagaRunner(OrderWorkflow(), bus, store, subscription)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        wait_for(lambda: runner.handled, "the runner to handle an event")
    finally:
        runner.stop()
        thread.join(timeout=10)
    assert runner.handled == 1
    found = [i.instance_id for i in store.instances("order_workflow")]
    assert found == [str(unseen.aggregate_id)], (found, seen.aggregate_id)
