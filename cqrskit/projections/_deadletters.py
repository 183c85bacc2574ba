"""Dead letters: events a projection could not apply, kept on a Kafka topic.

Each dead letter is the original message (key, value, headers) plus headers
that say why and where it came from: ``dlq.projection``, ``dlq.error``,
``dlq.handler``, ``dlq.topic``, ``dlq.partition``, ``dlq.offset``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from cqrskit.backends import kafka as kafka_backend
from cqrskit.errors import ServiceUnavailable
from cqrskit.settings import Settings

__all__ = ["DeadLetter", "DeadLetterTopic", "dead_letter_topic"]


def dead_letter_topic(settings: Settings, application_name: str, projection_name: str) -> str:
    """The dead-letter topic of a projection."""
    prefix = settings.topic_prefix or application_name.lower()
    return f"{prefix}.{projection_name}.dlq"


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered event, as listed by ``cqrskit projections dlq list``."""

    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]

    @property
    def error(self) -> str:
        """Why the handler failed."""
        return self.headers.get("dlq.error", b"").decode(errors="replace")

    @property
    def source(self) -> str:
        """topic[partition]@offset the event was consumed from."""
        topic, partition, offset = (
            self.headers.get(f"dlq.{name}", b"?").decode()
            for name in ("topic", "partition", "offset")
        )
        return f"{topic}[{partition}]@{offset}"


class DeadLetterTopic:
    """Writes and reads one projection's dead-letter topic."""

    def __init__(self, settings: Settings, application_name: str, projection_name: str):
        self.settings = settings
        self.projection_name = projection_name
        self.topic = dead_letter_topic(settings, application_name, projection_name)
        self._producer: Producer | None = None

    def send(self, message: Message, handler: str, error: str) -> None:
        """Queue ``message`` on the dead-letter topic with the reason; see :meth:`flush`."""
        if self._producer is None:
            kafka_backend.create_topic(
                kafka_backend.admin(self.settings), self.settings, self.topic, 1
            )
            self._producer = Producer(
                {
                    **kafka_backend.base_config(self.settings),
                    "enable.idempotence": True,
                    "acks": "all",
                }
            )
        headers: list[tuple[str, str | bytes | None]] = list(
            kafka_backend.headers_of(message).items()
        )
        headers += [
            ("dlq.projection", self.projection_name.encode()),
            ("dlq.handler", handler.encode()),
            ("dlq.error", error[:4000].encode()),
            ("dlq.topic", str(message.topic()).encode()),
            ("dlq.partition", str(message.partition()).encode()),
            ("dlq.offset", str(message.offset()).encode()),
        ]
        self._producer.produce(
            self.topic, value=message.value(), key=message.key(), headers=headers
        )

    def flush(self) -> None:
        """Wait until every queued dead letter is acknowledged.

        Raises:
            ServiceUnavailable: the broker did not acknowledge in time.
        """
        if self._producer is not None and self._producer.flush(self.settings.connect_timeout * 6):
            raise ServiceUnavailable(
                "Kafka",
                self.settings.kafka_bootstrap,
                "dead letters not acknowledged",
                kafka_backend.VARIABLE,
            )

    def read_all(self) -> Iterator[DeadLetter]:
        """Every dead letter from the start of the topic to its current end."""
        consumer = Consumer(
            {
                **kafka_backend.base_config(self.settings),
                "group.id": f"{self.topic}.reader",
                "enable.auto.commit": False,
            }
        )
        try:
            metadata = consumer.list_topics(self.topic, timeout=self.settings.connect_timeout)
            if metadata.topics[self.topic].error is not None:
                return
            partition = TopicPartition(self.topic, 0)
            low, high = consumer.get_watermark_offsets(
                partition, timeout=self.settings.connect_timeout
            )
            if high <= low:
                return
            consumer.assign([TopicPartition(self.topic, 0, low)])
            offset = low
            while offset < high:
                message = consumer.poll(self.settings.connect_timeout)
                if message is None:
                    raise ServiceUnavailable(
                        "Kafka",
                        self.settings.kafka_bootstrap,
                        f"no answer reading {self.topic}",
                        kafka_backend.VARIABLE,
                    )
                if message.error() is not None:
                    continue
                offset = (message.offset() or 0) + 1
                yield DeadLetter(
                    offset=offset - 1,
                    key=message.key(),
                    value=message.value() or b"",
                    headers=kafka_backend.headers_of(message),
                )
        finally:
            consumer.close()
