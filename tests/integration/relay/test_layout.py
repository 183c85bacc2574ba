"""The relay's own choice of partition is librdkafka's, on a real topic."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import NewPartitions, NewTopic

from cqrskit import Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.relay import partition_for
from tests.integration.conftest import REPO_ROOT
from tests.integration.relay.conftest import (
    WATERMARK,
    RelayHarness,
    bulk_fill,
    consume,
    stored_events,
    wait_until,
)


def test_the_relay_picks_the_partition_librdkafka_picks_for_a_key(
    settings: Settings, unique_name: str, kafka_up: None
) -> None:
    admin = kafka_backend.admin(settings)
    admin.create_topics([NewTopic(unique_name, num_partitions=7, replication_factor=1)])[
        unique_name
    ].result(timeout=30)
    try:
        kafka_backend.wait_for_topics(admin, settings, [unique_name])
        # A producer configured as the relay's (no partitioner set): librdkafka's own choice.
        producer = Producer(kafka_backend.base_config(settings))
        chosen: dict[bytes, int] = {}
        errors: list[KafkaError] = []

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                errors.append(error)
            chosen[bytes(message.key() or b"")] = int(message.partition() or 0)

        keys = [str(uuid.uuid4()).encode() for _ in range(300)]
        for key in keys:  # no partition given: the producer's own partitioner decides
            producer.produce(unique_name, b"{}", key, on_delivery=delivered)
        assert producer.flush(30) == 0
        assert not errors
        assert len(set(chosen.values())) == 7, "300 keys should reach every partition"
        assert chosen == {key: partition_for(key, 7) for key in keys}
    finally:
        admin.delete_topics([unique_name])[unique_name].result(timeout=30)


def test_partitions_added_to_a_topic_get_no_events_and_the_relay_says_so(
    relays: RelayHarness,
) -> None:
    relays.start()
    bulk_fill(relays.settings, 50)
    relays.wait_caught_up()
    topic = f"{relays.prefix}.order"
    admin = kafka_backend.admin(relays.settings)
    admin.create_partitions([NewPartitions(topic, 9)])[topic].result(timeout=30)

    bulk_fill(relays.settings, 200)
    stored = stored_events(relays.settings)
    consume(relays.settings, relays.prefix, set(stored))  # every event arrived
    on = partitions_of(relays.settings, topic)
    assert on <= set(range(6)), f"events went to partitions {sorted(on)}; 6 are pinned"
    wait_until(
        lambda: (
            "has 9 partitions; the relay sends events to the first 6"
            in relays.processes[0].output()
        ),
        30,
        "the relay to warn about the added partitions",
    )
    shown = subprocess.run(
        [sys.executable, "-m", "cqrskit.cli", "relay", "status", "--json"],
        env=relays.env(),
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    topics = {t["topic"]: t for t in json.loads(shown.stdout)["topics"]}
    assert topics[topic] == {
        "topic": topic,
        "used": 6,
        "in_kafka": 9,
        "moving_to": None,
        "kafka_error": "",
        "unused": 3,
    }


def partitions_of(settings: Settings, topic: str) -> set[int]:
    """The partitions of ``topic`` that hold at least one event (not only watermarks)."""
    consumer = Consumer(
        {**kafka_backend.base_config(settings), "group.id": "unused", "enable.auto.commit": False}
    )
    found: set[int] = set()
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        for partition in partitions:
            end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)[1]
            if not end:
                continue
            consumer.assign([TopicPartition(topic, partition, 0)])
            # The position, not the last message's offset: it passes the
            # transactions' commit markers, which are never delivered.
            deadline = time.monotonic() + 60
            while consumer.position([TopicPartition(topic, partition)])[0].offset < end:
                assert time.monotonic() < deadline, f"{topic}/{partition} not read to {end}"
                for message in consumer.consume(1000, timeout=1):
                    headers = kafka_backend.headers_of(message)
                    if headers.get("event_type") != WATERMARK:
                        found.add(partition)
    finally:
        consumer.close()
    return found
