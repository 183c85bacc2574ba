"""The TopicOffsets port's contract: a rebuild's and a status's view of the topics.

The live group's committed offsets, the ends, the lag, and a replay of the
messages between two sets of offsets. Runs in memory and on the real Kafka
(a fresh three-partition topic per test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from cqrskit import Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.kafka.offsets import KafkaOffsets
from cqrskit.adapters.memory.offsets import MemoryTopicOffsets
from cqrskit.adapters.memory.subscription import MemoryTopics
from cqrskit.projections._ports import BEGINNING, TopicOffsets
from cqrskit.subscription import Partition
from cqrskit.topology import partition_key
from tests.integration.conftest import kafka_topic, kafka_up, settings, unique_name

__all__ = ["kafka_topic", "kafka_up", "settings", "unique_name"]


@dataclass
class Topic:
    """Offsets of one three-partition topic, a way to publish, and the live group's commit."""

    name: str
    offsets: TopicOffsets
    publish: Callable[[int, bytes], None]
    commit_live: Callable[[int, int], None]

    def key(self, partition: int) -> str:
        return partition_key(self.name, partition)


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
def topic(request: pytest.FixtureRequest) -> Iterator[Topic]:
    if request.param == "memory":
        broker = MemoryTopics(partitions=3)
        broker.create("shop.order")

        def publish(partition: int, value: bytes) -> None:
            broker.append("shop.order", partition, value)

        def commit(partition: int, offset: int) -> None:
            broker.commit("live", {Partition("shop.order", partition): offset})

        offsets = MemoryTopicOffsets(broker, ["shop.order"], live_group="live")
        yield Topic("shop.order", offsets, publish, commit)
        return
    settings: Settings = request.getfixturevalue("settings")
    name: str = request.getfixturevalue("kafka_topic")
    producer = Producer(kafka_backend.base_config(settings))

    def publish_to_kafka(partition: int, value: bytes) -> None:
        producer.produce(name, value, partition=partition)
        assert producer.flush(30) == 0

    def commit_in_kafka(partition: int, offset: int) -> None:
        consumer = Consumer(
            {
                **kafka_backend.consumer_config(settings),
                "group.id": f"{name}.live",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.commit(offsets=[TopicPartition(name, partition, offset)], asynchronous=False)
        finally:
            consumer.close()

    offsets = KafkaOffsets(
        settings, [name], live_group=f"{name}.live", replay_group=f"{name}.replay"
    )
    yield Topic(name, offsets, publish_to_kafka, commit_in_kafka)


def test_the_live_group_starts_at_the_beginning_until_it_commits(topic: Topic) -> None:
    assert topic.offsets.committed() == {topic.key(p): BEGINNING for p in range(3)}
    topic.commit_live(1, 2)
    assert topic.offsets.committed()[topic.key(1)] == 2


def test_ends_count_the_messages_of_each_partition(topic: Topic) -> None:
    for value in (b"a", b"b", b"c"):
        topic.publish(0, value)
    topic.publish(2, b"d")
    assert topic.offsets.ends() == {topic.key(0): 3, topic.key(1): 0, topic.key(2): 1}


def test_the_lag_is_what_the_live_group_has_not_committed_past(topic: Topic) -> None:
    for value in (b"a", b"b", b"c"):
        topic.publish(0, value)
    assert topic.offsets.lag() == 3
    topic.commit_live(0, 2)
    assert topic.offsets.lag() == 1


def test_a_replay_reads_from_the_start_offsets_to_the_ends_in_batches(topic: Topic) -> None:
    for value in (b"a", b"b", b"c", b"d"):
        topic.publish(0, value)
    topic.publish(1, b"e")
    ends = topic.offsets.ends()
    batches = list(topic.offsets.replay({topic.key(0): 1}, ends, 2))
    assert all(len(batch) <= 2 for batch in batches)
    read = [(m.partition, m.offset, m.value) for batch in batches for m in batch]
    assert sorted(read) == [(0, 1, b"b"), (0, 2, b"c"), (0, 3, b"d"), (1, 0, b"e")]
    assert [o for p, o, _ in read if p == 0] == [1, 2, 3]  # offset order per partition


def test_a_replay_from_the_ends_reads_nothing(topic: Topic) -> None:
    topic.publish(0, b"a")
    ends = topic.offsets.ends()
    assert list(topic.offsets.replay(ends, ends, 10)) == []
