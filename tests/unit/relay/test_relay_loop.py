"""The relay's loop on the in-memory outbox and broker: lead, publish, record, hand over."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TypeVar

import orjson
import pytest
from tenacity import wait_fixed

from cqrskit import CommandBus, Settings
from cqrskit.adapters.memory.outbox import MemoryEvents, MemoryOutbox
from cqrskit.adapters.memory.publisher import MemoryBroker, MemoryPublisher
from cqrskit.envelope import HEADER_EVENT_TYPE, WATERMARK_EVENT_TYPE, Envelope
from cqrskit.relay import OutboxRelay, OutboxRow, RelayOptions
from cqrskit.topology import Topology
from examples.shop import PlaceOrder, ShopApp, handlers

T = TypeVar("T")
ORDER = PlaceOrder(customer_id="ada", lines=[{"sku": "tea", "quantity": 1, "unit_price": "2.00"}])
SETTINGS = Settings(relay_page_size=7, relay_lease=2.0)


def stored_events(orders: int) -> MemoryEvents:
    """``orders`` orders placed on the in-memory store, copied into an outbox."""
    app = ShopApp(persistence="memory")
    bus = CommandBus(app, handlers)
    for _ in range(orders):
        bus.dispatch(ORDER)
    events = MemoryEvents()
    for n in app.recorder.select_notifications(start=1, limit=10**9):
        events.append(str(n.originator_id), n.originator_version, n.topic, n.state)
    return events


def relay_on(events: MemoryEvents, broker: MemoryBroker) -> OutboxRelay:
    return OutboxRelay(
        Topology.of(SETTINGS, "shop"),
        outbox=MemoryOutbox(events),
        publishers=partial(MemoryPublisher, broker),
        options=RelayOptions.of(SETTINGS),
    )


def wait_until(predicate: Callable[[], T | None], timeout: float = 20) -> T:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return value


@contextmanager
def running(relay: OutboxRelay) -> Iterator[OutboxRelay]:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            relay.run()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        relay.stop()
        thread.join(timeout=20)
        assert not thread.is_alive()
        assert not failures, failures


def event_messages(broker: MemoryBroker) -> list[Envelope]:
    topic = Topology.of(SETTINGS, "shop").topic("Order")
    return [
        Envelope.decode(m.value)
        for m in broker.messages(topic)
        if dict(m.headers)[HEADER_EVENT_TYPE] != WATERMARK_EVENT_TYPE.encode()
    ]


def test_every_event_is_published_once_in_order_then_recorded() -> None:
    events, broker = stored_events(20), MemoryBroker()
    with running(relay_on(events, broker)):
        wait_until(lambda: events.positions.get("default") == len(events.rows))
    published = event_messages(broker)
    assert sorted(e.position for e in published) == list(range(1, len(events.rows) + 1))
    topic = Topology.of(SETTINGS, "shop").topic("Order")
    watermarks = [m for m in broker.messages(topic) if m.key is None]
    assert {m.partition for m in watermarks} == set(range(broker.partitions))


def test_a_second_relay_stands_by_and_takes_over_from_the_recorded_position() -> None:
    events, broker = stored_events(5), MemoryBroker()
    with running(relay_on(events, broker)):
        wait_until(lambda: events.positions.get("default") == 5)
        standby = relay_on(events, broker)
        with running(standby):
            time.sleep(0.3)
            assert standby.position is None  # it never led
    with running(relay_on(events, broker)) as third:
        bus_events = stored_events(3)
        for _, aggregate_id, version, topic, state in bus_events.rows:
            events.append(aggregate_id, version, topic, state)
        wait_until(lambda: events.positions.get("default") == 8)
        assert third.position == 8
    assert sorted(e.position for e in event_messages(broker)) == list(range(1, 9))


def test_a_message_refused_as_too_large_holds_the_position_until_the_limit_is_raised() -> None:
    events, broker = stored_events(6), MemoryBroker()
    sizes = [len(state) for *_, state in events.rows]
    broker.max_message_bytes = max(sizes) + 400  # the envelopes as stored fit
    big = events.rows[2]
    padded = orjson.loads(big[4])
    padded["customer_id"] = "x" * 10_000
    events.rows[2] = (*big[:4], orjson.dumps(padded))
    settings = SETTINGS.model_copy(update={"relay_refused_retry_interval": 0.05})
    relay = OutboxRelay(
        Topology.of(settings, "shop"),
        outbox=MemoryOutbox(events),
        publishers=partial(MemoryPublisher, broker),
        options=RelayOptions.of(settings),
    )
    with running(relay):
        wait_until(lambda: relay._refused == big[0])
        assert events.positions.get("default", 0) < big[0]
        assert not event_messages(broker)  # one transaction: nothing of it was committed
        broker.max_message_bytes = 1_000_000
        wait_until(lambda: events.positions.get("default") == len(events.rows))
    published = sorted(e.position for e in event_messages(broker))
    assert published == list(range(1, len(events.rows) + 1))


def test_a_relay_fenced_by_a_newer_producer_stands_down_and_resumes_without_doubles() -> None:
    events, broker = stored_events(5), MemoryBroker()
    relay = relay_on(events, broker)
    more = stored_events(3).rows
    with running(relay):
        wait_until(lambda: events.positions.get("default") == 5)
        MemoryPublisher(broker, relay.transactional_id).fence(1.0)  # a newer producer
        for _, aggregate_id, version, topic, state in more:
            events.append(aggregate_id, version, topic, state)
        wait_until(lambda: events.positions.get("default") == 8)
        assert "default" in events.leases  # leading again
    assert "LeaseLost" in events.errors["default"]
    assert "fenced by a newer producer" in events.errors["default"]
    assert sorted(e.position for e in event_messages(broker)) == list(range(1, 9))


class StallingOutbox(MemoryOutbox):
    """An outbox whose reads can be held, and whose lease row can be locked.

    As when an operator's transaction holds the relay's row in PostgreSQL:
    every renewal (a heartbeat, or a recorded position) waits until it is free.
    """

    def __init__(self, events: MemoryEvents):
        super().__init__(events)
        self.reads_open = threading.Event()
        self.reads_open.set()
        self.row_free = threading.Event()
        self.row_free.set()
        self.reading = False
        self.renewed_at = time.monotonic()

    def read(self, after: int, limit: int) -> Sequence[OutboxRow]:
        self.reading = True
        self.reads_open.wait()
        self.reading = False
        return super().read(after, limit)

    def _renew(self, position: int | None) -> bool:
        self.row_free.wait()
        renewed = super()._renew(position)
        self.renewed_at = time.monotonic()
        return renewed


def test_pages_read_when_the_lease_falls_due_are_committed_before_a_renewal_that_waits() -> None:
    """Regression: after a stall the relay renewed before committing what it had
    just sent, so a renewal waiting on a locked row held the pages uncommitted."""
    source, events, broker = stored_events(5), MemoryEvents(), MemoryBroker()
    outbox = StallingOutbox(events)
    relay = OutboxRelay(
        Topology.of(SETTINGS, "shop"),
        outbox=outbox,
        publishers=partial(MemoryPublisher, broker),
        options=RelayOptions.of(SETTINGS),
    )
    with running(relay):
        wait_until(lambda: "default" in events.leases)
        outbox.reads_open.clear()
        wait_until(lambda: outbox.reading)  # the relay stalls in a read
        outbox.row_free.clear()
        try:
            for _, aggregate_id, version, topic, state in source.rows:
                events.append(aggregate_id, version, topic, state)
            # The stall outlasts the renewal interval (1 s), not the lease (2 s).
            wait_until(lambda: time.monotonic() - outbox.renewed_at > 1.2)
            outbox.reads_open.set()
            published = wait_until(lambda: len(event_messages(broker)) == 5 or None, timeout=10)
            assert published
            assert "default" not in events.positions or events.positions["default"] == 0
        finally:
            outbox.row_free.set()
        wait_until(lambda: events.positions.get("default") == 5)
    assert sorted(e.position for e in event_messages(broker)) == [1, 2, 3, 4, 5]


def test_an_outage_is_one_warning_per_cause_then_one_info_when_the_relay_publishes_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Regression: every retry of an outage logged the error again, and 'is leading'."""
    events, broker = stored_events(3), MemoryBroker()
    relay = relay_on(events, broker)
    # Retry at once: the test counts retries, it does not wait out the back-off.
    relay._exponential = wait_fixed(0.02)
    more = stored_events(2).rows
    with caplog.at_level(logging.INFO, logger="cqrskit.relay"), running(relay):
        wait_until(lambda: events.positions.get("default") == 3)
        broker.outage = "Local: Broker transport failure"
        for _, aggregate_id, version, topic, state in more:
            events.append(aggregate_id, version, topic, state)
        wait_until(lambda: broker.refused_calls >= 5)
        broker.outage = "Local: Timed out"
        calls = broker.refused_calls
        wait_until(lambda: broker.refused_calls >= calls + 5)
        broker.outage = None
        wait_until(lambda: events.positions.get("default") == 5)
    lines = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "cqrskit.relay" and "stopp" not in r.getMessage()
    ]
    assert [level for level, _ in lines] == ["INFO", "WARNING", "WARNING", "INFO"], lines
    assert lines[0][1] == f"relay {relay.instance} is leading"
    assert "relay error, backing off" in lines[1][1]
    assert "Broker transport failure" in lines[1][1]
    assert "Timed out" in lines[2][1]
    assert lines[3][1] == f"relay {relay.instance} is publishing again"
    assert sorted(e.position for e in event_messages(broker)) == [1, 2, 3, 4, 5]
