"""Dead letters: events a projection could not apply, kept on a Kafka topic.

Each dead letter is the original message (key, value, headers) plus headers
that say why and where it came from: ``dlq.projection``, ``dlq.error``,
``dlq.handler``, ``dlq.topic``, ``dlq.partition``, ``dlq.offset``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

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
        origin = {
            "dlq.topic": str(message.topic()).encode(),
            "dlq.partition": str(message.partition()).encode(),
            "dlq.offset": str(message.offset()).encode(),
        }
        self._send(
            key=message.key(),
            value=message.value() or b"",
            headers=kafka_backend.headers_of(message),
            origin=origin,
            handler=handler,
            error=error,
        )

    def resend(self, letter: DeadLetter, handler: str, error: str) -> None:
        """Queue a dead letter again (it failed again on replay), with the new reason."""
        origin = {
            k: v
            for k, v in letter.headers.items()
            if k in ("dlq.topic", "dlq.partition", "dlq.offset")
        }
        headers = {k: v for k, v in letter.headers.items() if not k.startswith("dlq.")}
        self._send(
            key=letter.key,
            value=letter.value,
            headers=headers,
            origin=origin,
            handler=handler,
            error=error,
        )

    def _send(
        self,
        *,
        key: bytes | None,
        value: bytes,
        headers: dict[str, bytes],
        origin: dict[str, bytes],
        handler: str,
        error: str,
    ) -> None:
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
        all_headers: list[tuple[str, str | bytes | None]] = list(headers.items())
        all_headers += list(origin.items())
        all_headers += [
            ("dlq.projection", self.projection_name.encode()),
            ("dlq.handler", handler.encode()),
            ("dlq.error", error[:4000].encode()),
        ]
        self._producer.produce(self.topic, value=value, key=key, headers=all_headers)

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

    @property
    def replay_group(self) -> str:
        """The consumer group whose committed offset marks what was replayed."""
        return f"{self.topic}.replay"

    def _consumer(self) -> Consumer:
        return Consumer(
            {
                **kafka_backend.consumer_config(self.settings),
                "group.id": self.replay_group,
                "enable.auto.commit": False,
            }
        )

    def pending(self, *, include_replayed: bool = False) -> tuple[list[DeadLetter], int]:
        """Dead letters not replayed yet (or all of them), and the offset after the last.

        Raises:
            ServiceUnavailable: the broker did not answer.
        """
        consumer = self._consumer()
        timeout = self.settings.connect_timeout
        try:
            metadata = consumer.list_topics(self.topic, timeout=timeout)
            if metadata.topics[self.topic].error is not None:
                return [], 0  # no dead letter was ever written
            partition = TopicPartition(self.topic, 0)
            low, high = consumer.get_watermark_offsets(partition, timeout=timeout)
            start = low
            if not include_replayed:
                (committed,) = consumer.committed([partition], timeout=timeout)
                start = max(low, committed.offset) if committed.offset >= 0 else low
            letters = list(self._read(consumer, start, high))
            return letters, high
        except KafkaException as exc:
            raise ServiceUnavailable(
                "Kafka", self.settings.kafka_bootstrap, str(exc), kafka_backend.VARIABLE
            ) from exc
        finally:
            consumer.close()

    def mark_replayed(self, offset: int) -> None:
        """Record that every dead letter before ``offset`` was replayed."""
        consumer = self._consumer()
        try:
            consumer.commit(offsets=[TopicPartition(self.topic, 0, offset)], asynchronous=False)
        finally:
            consumer.close()

    def _read(self, consumer: Consumer, start: int, end: int) -> Iterator[DeadLetter]:
        if end <= start:
            return
        consumer.assign([TopicPartition(self.topic, 0, start)])
        offset = start
        while offset < end:
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
