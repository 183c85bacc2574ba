"""A rebuild's view of Kafka's offsets: partitions, the live group's position, the ends.

Offsets are keyed by :func:`~cqrskit.topology.partition_key`; a partition
the live group never committed reads as ``OFFSET_BEGINNING`` (stored as is
in a rebuild's progress, so that a resumed rebuild starts there too).
"""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from cqrskit.adapters import kafka as kafka_backend
from cqrskit.settings import Settings
from cqrskit.topology import partition_key

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

    def replay_consumer(self) -> Consumer:
        """A consumer of the replay group, for reading messages the caller assigns."""
        return self._consumer(self.replay_group)

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
            with kafka_backend.translated(self.settings.kafka_bootstrap, "reading partitions"):
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
            with kafka_backend.translated(self.settings.kafka_bootstrap, "reading offsets"):
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
                with kafka_backend.translated(self.settings.kafka_bootstrap, "reading offsets"):
                    _, high = consumer.get_watermark_offsets(
                        tp, timeout=self.settings.connect_timeout
                    )
                ends[_key(tp)] = high
            return ends
        finally:
            consumer.close()


def _key(tp: TopicPartition) -> str:
    return partition_key(tp.topic, tp.partition)
