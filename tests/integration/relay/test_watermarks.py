"""An idle relay sends nothing: watermarks go out when the position moves (decision 0004)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

from cqrskit import CommandBus, Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.postgres.outbox import read_status
from examples.shop import PlaceOrder, ShopApp, handlers
from tests.integration.relay.conftest import RelayHarness, read_partitions, relay_thread, wait_until


def place_order(settings: Settings) -> int:
    with ShopApp(settings) as app:
        result = CommandBus(app, handlers).dispatch(
            PlaceOrder(customer_id="ada", lines=[{"sku": "tea", "quantity": 1, "unit_price": "2"}])
        )
    assert result.position is not None
    return result.position


def end_offsets(settings: Settings, prefix: str) -> dict[str, int]:
    """The end offset of every partition of ``prefix``'s topics."""
    consumer = Consumer({**kafka_backend.consumer_config(settings), "group.id": f"{prefix}-ends"})
    try:
        topics = consumer.list_topics(timeout=30).topics
        ends = {}
        for name, topic in topics.items():
            if not name.startswith(f"{prefix}."):
                continue
            for partition in topic.partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(name, partition), 30)
                ends[f"{name}/{partition}"] = high
        return ends
    finally:
        consumer.close()


def test_an_idle_relay_sends_no_watermarks_and_a_new_event_marks_every_partition(
    relays: RelayHarness,
) -> None:
    settings = relays.settings.model_copy(update={"topic_prefix": relays.prefix})
    first = place_order(settings)
    with relay_thread(settings, "shop"):
        wait_until(lambda: read_status(settings, "shop").position >= first, 60, "the relay")
        read_partitions(settings, relays.prefix, {first}, timeout=60)
        before = end_offsets(settings, relays.prefix)
        # Idle for five of the relay's one-second turns: no message, no transaction.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert end_offsets(settings, relays.prefix) == before
        second = place_order(settings)

        def every_partition_marked() -> bool:
            log = read_partitions(settings, relays.prefix, {second}, timeout=60)
            return set(log.positions) == set(before) and all(
                second in positions for positions in log.positions.values()
            )

        wait_until(every_partition_marked, 30, "a watermark at the new position everywhere")
