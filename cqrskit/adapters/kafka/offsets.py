"""Kafka's :class:`~cqrskit.projections.TopicOffsets`: the live group's position, the
ends, the lag, and a replay of the messages between, for rebuilds and status.

Offsets are keyed by :func:`~cqrskit.topology.partition_key`; a partition
the live group never committed reads as ``OFFSET_BEGINNING`` (stored as is
in a rebuild's progress, so that a resumed rebuild starts there too).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.kafka._brokers import BROKERS
from cqrskit.adapters.kafka.subscription import delivered
from cqrskit.settings import Settings
from cqrskit.subscription import Message
from cqrskit.topology import parse_partition_key, partition_key

__all__ = ["KafkaOffsets"]


class KafkaOffsets:
    """Offsets of one projection's topics, for the live group and a replay group.

    Every method raises :class:`~cqrskit.errors.ServiceUnavailable` when the
    broker does not answer in time.
    """

    def __init__(
        self, settings: Settings, topics: list[str], *, live_group: str, replay_group: str
    ):
        self.settings = settings
        self.topics = topics
        self.live_group = live_group
        self.replay_group = replay_group

    def _consumer(self, group: str) -> Consumer:
        """A consumer of ``group`` that never commits by itself, from the earliest offset."""
        return Consumer(
            {
                **kafka_backend.consumer_config(self.settings),
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )

    def partitions(self) -> list[TopicPartition]:
        """Every partition of the topics (created first if missing)."""
        admin = kafka_backend.admin(self.settings)
        for topic in self.topics:
            kafka_backend.create_topic(admin, self.settings, topic)
        consumer = self._consumer(self.live_group)
        try:
            with kafka_backend.translated(
                self.settings.kafka_bootstrap, "reading partitions", client=consumer
            ):
                metadata = consumer.list_topics(timeout=self.settings.connect_timeout)
            return [
                TopicPartition(topic, p)
                for topic in self.topics
                for p in sorted(metadata.topics[topic].partitions)
            ]
        finally:
            consumer.close()

    def committed(self) -> dict[str, int]:
        """The live group's committed offsets (the start of each partition if none)."""
        consumer = self._consumer(self.live_group)
        try:
            partitions = self.partitions()
            with kafka_backend.translated(
                self.settings.kafka_bootstrap, "reading offsets", client=consumer
            ):
                committed = consumer.committed(partitions, timeout=self.settings.connect_timeout)
            return {_key(tp): tp.offset if tp.offset >= 0 else OFFSET_BEGINNING for tp in committed}
        finally:
            consumer.close()

    def ends(self) -> dict[str, int]:
        """The end offset of each partition now (where the next message will go)."""
        consumer = self._consumer(self.replay_group)
        try:
            ends = {}
            for tp in self.partitions():
                with kafka_backend.translated(
                    self.settings.kafka_bootstrap, "reading offsets", client=consumer
                ):
                    _, high = consumer.get_watermark_offsets(
                        tp, timeout=self.settings.connect_timeout
                    )
                ends[_key(tp)] = high
            return ends
        finally:
            consumer.close()

    def lag(self) -> int:
        """Messages of the existing topics the live group has not committed past.

        Creates nothing: a topic not there yet has no lag. Answers at once
        when another client of the process has just found every broker down
        (a status of several projections waits once, not once each).
        """
        timeout = self.settings.connect_timeout
        down = BROKERS.down_since(self.settings.kafka_bootstrap, timeout)
        if down is not None:
            raise kafka_backend.unavailable(self.settings.kafka_bootstrap, down, "reading the lag")
        consumer = self._consumer(self.live_group)
        try:
            with kafka_backend.translated(
                self.settings.kafka_bootstrap, "reading the lag", client=consumer
            ):
                metadata = consumer.list_topics(timeout=timeout)
                partitions = [
                    TopicPartition(topic, p)
                    for topic in self.topics
                    if topic in metadata.topics
                    for p in metadata.topics[topic].partitions
                ]
                committed = consumer.committed(partitions, timeout=timeout) if partitions else []
                total = 0
                for partition in committed:
                    low, high = consumer.get_watermark_offsets(partition, timeout=timeout)
                    start = partition.offset if partition.offset >= 0 else low
                    total += max(0, high - start)
            return total
        finally:
            consumer.close()

    def replay(
        self, start: Mapping[str, int], ends: Mapping[str, int], batch_size: int
    ) -> Iterator[Sequence[Message]]:
        """The messages from ``start`` up to ``ends``, in batches, read by the replay group.

        A partition is done once the consumer's position reaches its end
        (which may lie past the last message, after a transaction marker).
        """
        todo = {k for k, end in ends.items() if max(0, start.get(k, OFFSET_BEGINNING)) < end}
        if not todo:
            return
        consumer = self._consumer(self.replay_group)
        bootstrap = self.settings.kafka_bootstrap
        try:
            with kafka_backend.translated(bootstrap, "assigning the partitions to replay"):
                consumer.assign([_partition(k, start.get(k, OFFSET_BEGINNING)) for k in todo])
            while todo:
                with kafka_backend.translated(bootstrap, "replaying messages"):
                    received = consumer.consume(batch_size, timeout=1.0)
                if not received:
                    with kafka_backend.translated(bootstrap, "reading positions"):
                        positions = consumer.position([_partition(k, 0) for k in todo])
                    for tp in positions:
                        if tp.offset >= ends[_key(tp)]:
                            todo.discard(_key(tp))
                    continue
                messages = delivered(received, "rebuild")
                for message in messages:
                    key = partition_key(message.topic, message.partition)
                    if message.next_offset >= ends.get(key, 0):
                        todo.discard(key)
                yield messages
        finally:
            consumer.close()


def _partition(key: str, offset: int) -> TopicPartition:
    topic, partition = parse_partition_key(key)
    return TopicPartition(topic, partition, offset)


def _key(tp: TopicPartition) -> str:
    return partition_key(tp.topic, tp.partition)
