"""Dead letters: events a projection could not apply, kept on a Kafka topic.

Each dead letter is the original message (key, value, headers) plus headers
that say why and where it came from: ``dlq.projection``, ``dlq.error``,
``dlq.handler``, ``dlq.topic``, ``dlq.partition``, ``dlq.offset``.
"""

from __future__ import annotations

from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from cqrskit.adapters import kafka as kafka_backend
from cqrskit.envelope import HEADER_POSITION
from cqrskit.errors import DeadLetterRefused
from cqrskit.projections._ports import DeadLetter, reason_headers
from cqrskit.settings import Settings
from cqrskit.subscription import Message as Delivered
from cqrskit.topology import Topology

__all__ = ["KafkaDeadLetters"]


class KafkaDeadLetters:
    """The :class:`~cqrskit.projections.DeadLetters` of one projection: its dead-letter topic.

    Writing is two steps: :meth:`send` queues letters, :meth:`flush` returns
    only once Kafka's delivery report said that each one was written, and
    raises otherwise. Callers mark an event failed, or commit past it, only
    after :meth:`flush` returned.
    """

    def __init__(self, settings: Settings, application_name: str, projection_name: str):
        self.settings = settings
        self.projection_name = projection_name
        topology = Topology.of(settings, application_name)
        self.topic = topology.dead_letter_topic(projection_name)
        self._replay_group = topology.replay_group(projection_name)
        self._producer: Producer | None = None
        #: (position, source, error) of letters whose delivery report said "not written".
        self._refused: list[tuple[int | None, str, KafkaError]] = []

    @property
    def _timeout(self) -> float:
        """Seconds a letter may wait for the broker before it counts as refused."""
        return self.settings.connect_timeout * 6

    def send(self, message: Delivered, handler: str, error: str) -> None:
        """Queue ``message`` on the dead-letter topic with the reason; see :meth:`flush`."""
        origin = {
            "dlq.topic": message.topic.encode(),
            "dlq.partition": b"%d" % message.partition,
            "dlq.offset": b"%d" % message.offset,
        }
        self._send(message.key, message.value, {**message.headers, **origin}, handler, error)

    def resend(self, letter: DeadLetter, handler: str, error: str) -> None:
        """Queue a dead letter again (it failed again on replay), with the new reason."""
        origin = {
            k: v
            for k, v in letter.headers.items()
            if k in ("dlq.topic", "dlq.partition", "dlq.offset")
        }
        headers = {k: v for k, v in letter.headers.items() if not k.startswith("dlq.")}
        self._send(letter.key, letter.value, {**headers, **origin}, handler, error)

    def _send(
        self, key: bytes | None, value: bytes, headers: dict[str, bytes], handler: str, error: str
    ) -> None:
        """Queue one letter; ``headers`` are the event's, then its ``dlq.*`` origin."""
        if self._producer is None:
            kafka_backend.create_topic(
                kafka_backend.admin(self.settings), self.settings, self.topic, 1
            )
            self._producer = Producer(
                {
                    **kafka_backend.base_config(self.settings),
                    "enable.idempotence": True,
                    "acks": "all",
                    # A letter the broker cannot take in time gets a delivery
                    # report saying so (within flush's wait), not silence.
                    "message.timeout.ms": int(self._timeout * 1000),
                }
            )
        position = headers.get(HEADER_POSITION, b"")
        at = int(position) if position.isdigit() else None
        source = "{}[{}]@{}".format(
            *(headers.get(f"dlq.{n}", b"?").decode() for n in ("topic", "partition", "offset"))
        )

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                self._refused.append((at, source, error))

        all_headers: list[tuple[str, str | bytes | None]] = list(headers.items())
        all_headers += [("dlq.projection", self.projection_name.encode())]
        all_headers += list(reason_headers(handler, error).items())
        self._producer.produce(
            self.topic, value=value, key=key, headers=all_headers, on_delivery=delivered
        )

    def flush(self) -> None:
        """Return once the delivery report of every queued letter said it was written.

        Letters not written are forgotten here: the caller sends them again.

        Raises:
            DeadLetterRefused: a letter's delivery report said it was not
                written (the broker's reason: too large, timed out...); names
                the first such event, the topic and the reason.
            ServiceUnavailable: no delivery report came in time.
        """
        producer = self._producer
        if producer is None:
            return
        left = producer.flush(self._timeout + self.settings.connect_timeout)
        refused, self._refused = self._refused, []
        if left:
            producer.purge(in_queue=True, in_flight=True)
            self._producer = None  # a new producer sends them again, cleanly
            raise kafka_backend.unavailable(
                self.settings.kafka_bootstrap,
                "not acknowledged",
                f"writing {left} dead letters to {self.topic}",
            )
        if refused:
            if any(error.fatal() for _, _, error in refused):
                self._producer = None  # an idempotent producer that failed fatally is spent
            position, source, error = refused[0]
            raise DeadLetterRefused(self.topic, position, source, error.str(), len(refused))

    @property
    def replay_group(self) -> str:
        """The consumer group whose committed offset marks what was replayed."""
        return self._replay_group

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
            with kafka_backend.translated(
                self.settings.kafka_bootstrap, f"reading {self.topic}", client=consumer
            ):
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
                raise kafka_backend.unavailable(
                    self.settings.kafka_bootstrap, "no answer", f"reading {self.topic}"
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
