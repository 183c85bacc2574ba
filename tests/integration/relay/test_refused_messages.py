"""A message the broker refuses as too large stops the relay loudly, not silently (issue 15).

The topic is created with a small ``max.message.bytes`` (a topic-level
setting), one event is stored that is larger, and the relay must say which
event it is, keep its position, publish nothing after it, and go on by
itself once the operator raised the topic's limit.
"""

from __future__ import annotations

import base64
import logging
import os

import pytest
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)
from prometheus_client import REGISTRY

from cqrskit.adapters import kafka as kafka_backend
from examples.shop import Order, ShopApp
from tests.integration.relay.conftest import (
    LINE,
    RelayHarness,
    consume,
    relay_thread,
    stored_events,
    wait_until,
)


def _refusals() -> float:
    sample = REGISTRY.get_sample_value(
        "cqrskit_relay_errors_total", {"application": "shop", "kind": "MessageTooLarge"}
    )
    return sample or 0.0


def _state(name: str) -> float | None:
    return REGISTRY.get_sample_value(
        "cqrskit_relay_state", {"application": "shop", "cqrskit_relay_state": name}
    )


def test_a_message_the_broker_refuses_as_too_large_is_named_held_and_sent_once_allowed(
    relays: RelayHarness, caplog: pytest.LogCaptureFixture
) -> None:
    settings = relays.settings.model_copy(
        update={
            "topic_prefix": relays.prefix,
            "relay_page_size": 2,
            "relay_refused_retry_interval": 1.0,
        }
    )
    topic = f"{relays.prefix}.order"
    admin = kafka_backend.admin(settings)
    # One partition: its order is the store's order, so "nothing after the
    # refused event ahead of it" is visible in one sequence.
    new = NewTopic(
        topic, num_partitions=1, replication_factor=1, config={"max.message.bytes": "20000"}
    )
    admin.create_topics([new])[topic].result(timeout=30)
    big = base64.b64encode(os.urandom(60_000)).decode()  # incompressible: ~80 kB on the wire
    with ShopApp(settings) as app:
        app.save(*[Order(customer_id=f"c{n}", lines=[LINE]) for n in range(3)])
        refused = Order(customer_id=big, lines=[LINE])
        app.save(refused)
        app.save(*[Order(customer_id=f"d{n}", lines=[LINE]) for n in range(3)])
    stored = stored_events(settings)
    (refused_at,) = [p for p, (aggregate_id, _) in stored.items() if aggregate_id == refused.id]

    caplog.set_level(logging.INFO, logger="cqrskit.relay")
    before = _refusals()
    with relay_thread(settings, "shop"):
        wait_until(lambda: _refusals() >= before + 3, 60, "three attempts at the refused event")
        held = relays.status()
        assert _state("message-refused") == 1
        # The operator raises the topic's limit; the relay goes on by itself.
        raised = ConfigEntry(
            "max.message.bytes", "10000000", incremental_operation=AlterConfigOpType.SET
        )
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[raised])
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(timeout=30)
        relays.wait_caught_up(timeout=60)
        assert _state("leading") == 1

    assert held.position < refused_at
    assert held.last_error is not None
    for part in (f"position {refused_at}", str(refused.id), "Order.Placed", topic, "bytes"):
        assert part in held.last_error, (part, held.last_error)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "too large" in r.message]
    assert len(errors) == 1, [r.message for r in errors]
    # One partition: had anything after the refused event been published
    # while it was held, it would come before it here.
    delivered = consume(settings, relays.prefix, set(stored), timeout=30)
    first_seen = list(dict.fromkeys(delivered.positions()))
    assert first_seen == sorted(stored), "the partition's order is not the store's"
    assert not [r for r in caplog.records if "FATAL" in r.getMessage()], "librdkafka repeated it"
