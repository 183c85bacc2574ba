"""The names cqrskit gives to what it creates: pinned, because deployments depend on them.

A renamed topic, group or index is an outage (a worker that reads from
offset 0 of a new group, a query that finds no alias), so each name is
asserted here exactly as earlier releases created it.
"""

from __future__ import annotations

import pytest

from cqrskit import Settings
from cqrskit.topology import (
    IndexNames,
    Topology,
    checkpoint_id,
    parse_partition_key,
    partition_key,
    version_number,
)


@pytest.fixture
def topology() -> Topology:
    return Topology.of(Settings(postgres_schema="tenant", index_prefix="t-"), "ShopApp")


def test_kafka_names_are_those_earlier_releases_created(topology: Topology) -> None:
    assert topology.topic("Order") == "shopapp.order"
    assert topology.topics(["Payment", "Order", "Order"]) == ["shopapp.order", "shopapp.payment"]
    assert topology.projection_group("orders") == "shopapp.projection.orders"
    assert topology.rebuild_group("orders") == "shopapp.projection.orders.rebuild"
    assert topology.dead_letter_topic("orders") == "shopapp.orders.dlq"
    assert topology.replay_group("orders") == "shopapp.orders.dlq.replay"
    assert topology.saga_group("checkout") == "shopapp.saga.checkout"
    assert topology.transactional_id("default") == "cqrskit-relay.shopapp.tenant.ShopApp.default"


def test_a_topic_prefix_and_the_one_topic_layout_change_the_topics() -> None:
    settings = Settings(topic_prefix="acme", topic_layout="per-application")
    topology = Topology.of(settings, "ShopApp")
    assert topology.topic("Order") == topology.topic("Payment") == "acme.events"
    assert topology.is_event_topic("acme.events")
    assert not topology.is_event_topic("acme.orders.dlq")
    assert not topology.is_event_topic("other.events")


def test_tables_and_indices_are_those_earlier_releases_created(topology: Topology) -> None:
    assert topology.events_table == "shopapp_events"
    assert topology.idempotency_table == "shopapp_idempotency"
    assert topology.saga_table("instances") == "shopapp_saga_instances"
    with pytest.raises(ValueError, match="no saga table"):
        topology.saga_table("nonsense")
    names = topology.indices
    assert names == IndexNames.of(Settings(index_prefix="t-"))
    assert names.alias("orders") == "t-orders"
    assert names.index("orders", 3) == "t-orders-v3"
    assert version_number(names.index("orders", 12)) == 12
    assert version_number("t-orders") == 0
    assert names.checkpoints_index == "t-cqrskit-checkpoints"
    assert names.rebuilds_index == "t-cqrskit-rebuilds"
    assert names.stats_index == "t-cqrskit-stats"
    assert checkpoint_id("t-orders-v1", "shopapp.order", 2, "worker") == (
        "t-orders-v1|shopapp.order|2|worker"
    )


def test_a_partition_key_reads_back_in_both_forms_it_was_ever_kept_in() -> None:
    key = partition_key("shopapp.order", 5)
    assert key == "shopapp.order/5"
    assert parse_partition_key(key) == ("shopapp.order", 5)
    # Rebuild progress kept before partition keys had one form.
    assert parse_partition_key("shopapp.order|5") == ("shopapp.order", 5)


def test_the_topics_and_groups_an_application_owns_are_its_names_only(topology: Topology) -> None:
    """What ``cqrskit teardown`` removes in Kafka: never a topic of a longer prefix."""
    for topic in ("shopapp.order", "shopapp.events", "shopapp.order_summaries.dlq"):
        assert topology.owns_topic(topic), topic
    for topic in ("shopapp.eu.order", "shopappx.order", "other.order", "shopapp."):
        assert not topology.owns_topic(topic), topic
    for group in (
        "shopapp.projection.orders",
        "shopapp.projection.orders.rebuild",
        "shopapp.orders.dlq.replay",
        "shopapp.saga.checkout",
    ):
        assert topology.owns_group(group), group
    for group in ("shopapp.eu.projection.orders", "shopapp.checker-1", "other.saga.checkout"):
        assert not topology.owns_group(group), group


def test_the_tables_of_one_application_are_pinned(topology: Topology) -> None:
    assert topology.own_tables == [
        "shopapp_events",
        "shopapp_idempotency",
        "shopapp_snapshots",
        *(
            f"shopapp_saga_{p}"
            for p in ("instances", "history", "deadlines", "handled", "positions", "pending")
        ),
    ]
