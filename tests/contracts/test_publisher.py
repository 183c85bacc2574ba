"""The Publisher port's contract, run against the in-memory broker and Kafka.

What the relay relies on (decision 0008): a transaction's messages become
visible all at once on commit, in the order produced; a newer publisher of
the same transactional id fences an older one, whose open transaction never
becomes visible and whose calls fail with KafkaTrouble (``fenced`` set); an
abandoned transaction never becomes visible; a watermark reaches every
partition of every event topic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Protocol

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from cqrskit import Settings, check_services
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.kafka.publisher import KafkaPublisher
from cqrskit.adapters.memory.publisher import MemoryBroker, MemoryPublisher
from cqrskit.errors import KafkaTrouble
from cqrskit.relay import Publisher
from cqrskit.topology import Topology

APP = "contract"
WAIT = 30.0
Seen = list[tuple[int, bytes | None, bytes]]


class Broker(Protocol):
    """One implementation's broker: publishers on it, and what it committed."""

    topology: Topology
    partitions: int

    def publisher(self, transactional_id: str) -> Publisher: ...

    def committed(self, topic: str, until: bytes, count: int = 1) -> Seen:
        """(partition, key, value) of the committed messages, up to ``count`` of value ``until``."""
        ...


class _MemoryBroker:
    def __init__(self) -> None:
        self.broker = MemoryBroker(partitions=3)
        self.partitions = 3
        self.topology = Topology.of(Settings(topic_prefix=f"c{uuid.uuid4().hex[:8]}"), APP)

    def publisher(self, transactional_id: str) -> Publisher:
        return MemoryPublisher(self.broker, transactional_id)

    def committed(self, topic: str, until: bytes, count: int = 1) -> Seen:
        seen = [(m.partition, m.key, m.value) for m in self.broker.messages(topic)]
        assert [value for _, _, value in seen].count(until) == count
        return seen


class _KafkaBroker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.partitions = settings.topic_partitions
        self.topology = Topology.of(settings, APP)

    def publisher(self, transactional_id: str) -> Publisher:
        return KafkaPublisher(self.settings, transactional_id)

    def committed(self, topic: str, until: bytes, count: int = 1) -> Seen:
        consumer = Consumer(
            {
                **kafka_backend.consumer_config(self.settings),
                "group.id": f"contract-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.assign(
                [TopicPartition(topic, p, 0) for p in range(self.partitions)]  # from the start
            )
            seen: Seen = []
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None or message.error():
                    continue
                seen.append((message.partition(), message.key(), message.value()))
                if message.value() == until:
                    count -= 1
                    if count == 0:
                        return seen
            raise AssertionError(f"{until!r} never arrived on {topic}")
        finally:
            consumer.close()


class PublisherContract:
    """The behaviour of every Publisher; subclasses provide ``broker``."""

    @pytest.fixture
    def broker(self) -> Iterator[Broker]:
        raise NotImplementedError

    @pytest.fixture
    def topic(self, broker: Broker) -> str:
        topic = broker.topology.topic("Order")
        setup = broker.publisher(f"setup-{uuid.uuid4().hex}")
        setup.ensure_topic(topic)
        setup.ensure_topic(topic)  # idempotent
        assert setup.partition_count(topic) == broker.partitions
        setup.abandon(1.0)
        return topic

    @staticmethod
    def _commit(publisher: Publisher) -> None:
        deadline = time.monotonic() + WAIT
        while not publisher.commit(1.0):
            assert time.monotonic() < deadline, "the commit did not finish"

    def _marking(self, broker: Broker, topic: str, position: int) -> Publisher:
        """A fenced publisher that has marked every partition of ``topic`` at ``position``."""
        publisher = broker.publisher(f"tx-{uuid.uuid4().hex}")
        self._fence(publisher)
        deadline = time.monotonic() + WAIT
        while publisher.known_partitions().get(topic) != broker.partitions:
            assert time.monotonic() < deadline, "the topic never showed its partitions"
            publisher.publish_watermark(broker.topology, position)
            time.sleep(0.1)  # the publisher looks for new partitions every 2 s
        return publisher

    @staticmethod
    def _fence(publisher: Publisher) -> None:
        deadline = time.monotonic() + WAIT
        while not publisher.fence(1.0):
            assert time.monotonic() < deadline, "fencing did not finish"

    def test_a_committed_transaction_is_visible_in_the_order_produced(
        self, broker: Broker, topic: str
    ) -> None:
        publisher = broker.publisher(f"tx-{uuid.uuid4().hex}")
        self._fence(publisher)
        publisher.begin()
        assert publisher.in_transaction
        for value in (b"1", b"2", b"3"):
            publisher.produce(topic, b"k", value, [], partition=1)
        self._commit(publisher)
        assert not publisher.in_transaction
        seen = broker.committed(topic, until=b"3")
        assert [(p, k, v) for p, k, v in seen] == [
            (1, b"k", b"1"),
            (1, b"k", b"2"),
            (1, b"k", b"3"),
        ]
        publisher.abandon(1.0)

    def test_a_newer_publisher_fences_the_older_one(self, broker: Broker, topic: str) -> None:
        transactional_id = f"tx-{uuid.uuid4().hex}"
        old = broker.publisher(transactional_id)
        self._fence(old)
        old.begin()
        old.produce(topic, b"k", b"old", [], partition=0)
        new = broker.publisher(transactional_id)
        self._fence(new)
        with pytest.raises(KafkaTrouble):
            self._commit(old)
        assert old.fenced
        old.abandon(1.0)  # never raises
        new.begin()
        new.produce(topic, b"k", b"new", [], partition=0)
        self._commit(new)
        seen = broker.committed(topic, until=b"new")
        assert b"old" not in [value for _, _, value in seen]
        assert not new.fenced
        new.abandon(1.0)

    def test_an_abandoned_transaction_never_becomes_visible(
        self, broker: Broker, topic: str
    ) -> None:
        transactional_id = f"tx-{uuid.uuid4().hex}"
        first = broker.publisher(transactional_id)
        self._fence(first)
        first.begin()
        first.produce(topic, b"k", b"gone", [], partition=2)
        first.abandon(5.0)
        assert not first.in_transaction
        second = broker.publisher(transactional_id)
        self._fence(second)
        second.begin()
        second.produce(topic, b"k", b"kept", [], partition=2)
        self._commit(second)
        seen = broker.committed(topic, until=b"kept")
        assert b"gone" not in [value for _, _, value in seen]
        second.abandon(1.0)

    def test_a_watermark_reaches_every_partition_of_every_event_topic(
        self, broker: Broker, topic: str
    ) -> None:
        publisher = self._marking(broker, topic, position=5)
        for partition in range(broker.partitions):  # after the marks in each partition
            publisher.produce(topic, b"k", b"end", [], partition=partition)
        self._commit(publisher)
        seen = broker.committed(topic, until=b"end", count=broker.partitions)
        marked = {partition for partition, key, _ in seen if key is None}
        assert marked == set(range(broker.partitions))
        publisher.abandon(1.0)

    def test_a_position_already_marked_is_not_marked_again(
        self, broker: Broker, topic: str
    ) -> None:
        publisher = self._marking(broker, topic, position=5)
        self._commit(publisher)
        for _ in range(3):  # an idle relay's turns: nothing to say, no transaction
            publisher.publish_watermark(broker.topology, 5)
            assert not publisher.in_transaction
        publisher.publish_watermark(broker.topology, 7)
        for partition in range(broker.partitions):
            publisher.produce(topic, b"k", b"end", [], partition=partition)
        self._commit(publisher)
        seen = broker.committed(topic, until=b"end", count=broker.partitions)
        marks = [value for _, key, value in seen if key is None]
        assert sorted(orjson.loads(v)["watermark"] for v in marks) == (
            [5] * broker.partitions + [7] * broker.partitions
        )
        publisher.abandon(1.0)

    def test_a_refusal_as_too_large_is_recognised(self, broker: Broker, topic: str) -> None:
        publisher = broker.publisher(f"tx-{uuid.uuid4().hex}")
        assert publisher.refused_as_too_large(KafkaTrouble("Broker: Message size too large"))
        assert not publisher.refused_as_too_large(KafkaTrouble("Local: Broker transport failure"))
        assert publisher.max_message_bytes(topic, default=123) > 0
        publisher.abandon(1.0)


class TestMemoryPublisher(PublisherContract):
    @pytest.fixture
    def broker(self) -> Broker:
        return _MemoryBroker()


@pytest.mark.integration
class TestKafkaPublisher(PublisherContract):
    @pytest.fixture
    def broker(self) -> Iterator[Broker]:
        settings = Settings.load()
        (check,) = [c for c in check_services(settings) if c.service == "Kafka"]
        if not check.ok:
            pytest.fail(f"this test needs the real Kafka at {check.address}: {check.detail}")
        prefix = f"contract_{uuid.uuid4().hex[:10]}"
        yield _KafkaBroker(settings.model_copy(update={"topic_prefix": prefix}))
        admin = kafka_backend.admin(settings)
        topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if topics:
            for future in admin.delete_topics(topics).values():
                future.result(timeout=30)
