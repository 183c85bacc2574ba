"""The relay as users run it: real processes, a real broker, real faults.

Each test counts duplicates and checks they come only from the tail the
relay had not recorded as acknowledged when it was killed.
"""

from __future__ import annotations

import subprocess
import time

from cqrskit import CommandBus
from cqrskit.envelope import HEADER_EVENT_TYPE, HEADER_POSITION, HEADER_TRACEPARENT
from cqrskit.relay import RelayStatus
from examples.shop import PlaceOrder, ShopApp, handlers
from tests.integration.conftest import REPO_ROOT
from tests.integration.relay.conftest import (
    CommandStream,
    RelayHarness,
    assert_in_order_and_complete,
    bulk_fill,
    consume,
    stored_events,
    wait_until,
)

KAFKA = ["bash", str(REPO_ROOT / "scripts" / "kafka.sh")]


def test_every_committed_event_arrives_in_per_aggregate_order(relays: RelayHarness) -> None:
    relays.start()
    with CommandStream(relays.settings) as stream:
        wait_until(lambda: stream.accepted >= 300, 120, "300 accepted commands")
    assert not stream.errors
    relays.wait_caught_up()
    stored = stored_events(relays.settings)
    delivered = consume(relays.settings, relays.prefix, set(stored))
    assert_in_order_and_complete(delivered, stored)
    assert delivered.duplicates() == []


def test_a_plain_consumer_reads_the_documented_envelope(relays: RelayHarness) -> None:
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with ShopApp(relays.settings) as app:
        result = CommandBus(app, handlers).dispatch(
            PlaceOrder(
                customer_id="ada", lines=[{"sku": "tea", "quantity": 2, "unit_price": "3.50"}]
            ),
            traceparent=trace,
        )
        (stored,) = list(app.events.get(result.aggregate_id))
    relays.start()
    relays.wait_caught_up()
    delivered = consume(relays.settings, relays.prefix, {result.position or -1})
    (envelope,) = delivered.envelopes
    assert envelope.event_id == stored.metadata.event_id  # type: ignore[attr-defined]
    assert envelope.event_type == "Order.Placed"
    assert envelope.aggregate_type == "Order"
    assert envelope.aggregate_id == result.aggregate_id
    assert envelope.aggregate_version == 1
    assert envelope.position == result.position
    assert envelope.schema_version == 1
    assert envelope.occurred_at == stored.timestamp  # type: ignore[attr-defined]
    assert envelope.payload == {
        "customer_id": "ada",
        "lines": [{"sku": "tea", "quantity": 2, "unit_price": "3.50", "item_id": None}],
    }
    assert envelope.metadata.traceparent == trace
    assert envelope.metadata.correlation_id is not None
    (headers,) = delivered.headers
    assert headers[HEADER_EVENT_TYPE] == b"Order.Placed"
    assert headers[HEADER_POSITION] == str(result.position).encode()
    assert headers[HEADER_TRACEPARENT] == trace.encode()


def test_a_relay_killed_mid_batch_loses_nothing(relays: RelayHarness) -> None:
    bulk_fill(relays.settings, 60_000)
    first = relays.start()

    def mid_batch() -> RelayStatus | None:
        status = relays.status()
        return status if 0 < status.position < status.head else None

    wait_until(mid_batch, 120, "the relay to be part-way through the outbox")
    first.kill9()
    recorded_at_kill = relays.status().position
    relays.start()
    relays.wait_caught_up()
    stored = stored_events(relays.settings)
    delivered = consume(relays.settings, relays.prefix, set(stored))
    assert_in_order_and_complete(delivered, stored)
    duplicates = delivered.duplicates()
    print(f"kill -9 at position {recorded_at_kill}: {len(duplicates)} duplicates re-sent")
    assert all(p > recorded_at_kill for p in duplicates), "a recorded event was sent twice"


def test_a_stopped_and_restarted_broker_loses_nothing(relays: RelayHarness) -> None:
    relay = relays.start()
    with CommandStream(relays.settings) as stream:
        wait_until(lambda: stream.accepted >= 100, 60, "commands before the outage")
        relays.wait_caught_up()
        subprocess.run([*KAFKA, "stop"], check=True, timeout=120)
        try:
            during = stream.accepted
            wait_until(lambda: stream.accepted >= during + 200, 60, "commands during the outage")
            held = relays.status()
            assert held.position < held.head, "the relay recorded events the broker never acked"
        finally:
            subprocess.run([*KAFKA, "start"], check=True, timeout=300)
        after = stream.accepted
        wait_until(lambda: stream.accepted >= after + 100, 60, "commands after the outage")
    assert not stream.errors
    relays.wait_caught_up(timeout=180)
    assert relay.proc.poll() is None, "the relay died during the outage"
    stored = stored_events(relays.settings)
    delivered = consume(relays.settings, relays.prefix, set(stored))
    assert_in_order_and_complete(delivered, stored)
    print(f"broker outage: {len(delivered.duplicates())} duplicates")
    assert "Kafka unreachable" in relay.output()


def test_only_one_relay_publishes_and_a_standby_takes_over_within_10s(
    relays: RelayHarness,
) -> None:
    first, second = relays.start_leader_and_standby()
    with CommandStream(relays.settings) as stream:
        wait_until(lambda: stream.accepted >= 300, 60, "commands under the first relay")
        first.kill9()
        killed_at = time.monotonic()
        recorded_at_kill = relays.status().position
        wait_until(lambda: relays.leader() is second, 10, "the standby to take over")
        takeover = time.monotonic() - killed_at
        after = stream.accepted
        wait_until(lambda: stream.accepted >= after + 300, 60, "commands under the second relay")
    relays.wait_caught_up()
    stored = stored_events(relays.settings)
    delivered = consume(relays.settings, relays.prefix, set(stored))
    assert_in_order_and_complete(delivered, stored)
    duplicates = delivered.duplicates()
    print(f"take-over in {takeover:.1f}s; {len(duplicates)} duplicates re-sent")
    assert all(p > recorded_at_kill for p in duplicates), "two relays published the same events"


def test_sigterm_drains_records_the_position_and_exits_0(relays: RelayHarness) -> None:
    bulk_fill(relays.settings, 40_000)
    relay = relays.start()
    wait_until(lambda: relays.status().position > 0, 60, "the relay to publish")
    assert relay.terminate() == 0
    assert "received SIGTERM" in relay.output()
    assert "stopped" in relay.output()
    # Drained: everything it sent was acknowledged and recorded, so a new
    # relay starts exactly where it stopped and sends nothing twice.
    relays.start()
    relays.wait_caught_up()
    stored = stored_events(relays.settings)
    delivered = consume(relays.settings, relays.prefix, set(stored))
    assert_in_order_and_complete(delivered, stored)
    assert delivered.duplicates() == []
