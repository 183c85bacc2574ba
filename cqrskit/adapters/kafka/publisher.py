"""The relay's publisher on Kafka: a transactional, batching, compressing producer.

Transactions are the relay's fencing on the Kafka side: every relay of one
outbox uses one ``transactional.id``, so the new leader's
``init_transactions`` aborts what the old leader's producer had not
committed and refuses everything it sends afterwards (its epoch is stale).
Consumers read ``read_committed`` and never see the aborted messages.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    ConfigResource,
    ResourceType,
)

from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.kafka._brokers import BROKERS
from cqrskit.envelope import (
    HEADER_EVENT_TYPE,
    HEADER_POSITION,
    HEADER_SEAL,
    WATERMARK_EVENT_TYPE,
    Seal,
)
from cqrskit.errors import KafkaTrouble
from cqrskit.settings import Settings
from cqrskit.topology import Topology

__all__ = ["FENCED", "TOO_LARGE", "KafkaPublisher"]

log = logging.getLogger("cqrskit.relay")

# librdkafka error codes that mean "the broker cannot be reached right now".
_UNREACHABLE = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT}

#: How librdkafka words a message refused as too large, by the broker or by
#: the producer's own ``message.max.bytes``, also inside the fatal error the
#: gapless guarantee makes of it.
TOO_LARGE = "Message size too large"

#: librdkafka error codes that mean "a newer producer with our transactional.id exists".
FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


def _finished(call: Callable[[float], None], timeout: float) -> bool:
    """Run one of librdkafka's blocking transaction calls; False if it timed out.

    A time-out is retriable: the call goes on in the background, and calling
    it again waits for the same outcome.
    """
    try:
        call(timeout)
    except KafkaException as exc:
        if exc.args[0].retriable():
            return False
        raise
    return True


class KafkaPublisher:
    """Publishes envelopes to Kafka in large transactions, many messages in flight.

    The producer is transactional (so idempotent, ``acks=all``): retries
    inside librdkafka never duplicate or reorder messages of one partition,
    a failed message fails its whole transaction, and a newer producer with
    the same ``transactional_id`` fences this one. While the broker is
    unreachable, messages wait in the producer's queue; the relay's pages
    in flight bound how many.

    Produce only between :meth:`begin` and :meth:`commit`; call
    :meth:`fence` once before the first :meth:`begin`.

    Implements :class:`cqrskit.relay.Publisher`: every ``KafkaException``
    is raised as :class:`~cqrskit.errors.KafkaTrouble` in librdkafka's own
    words, after setting :attr:`fenced` if a newer producer fenced this one.
    """

    def __init__(
        self,
        settings: Settings,
        transactional_id: str,
        on_unreachable: Callable[[str], None] | None = None,
        seal: Seal | None = None,
    ):
        self.settings = settings
        self.transactional_id = transactional_id
        self._on_unreachable = on_unreachable
        config: dict[str, Any] = {
            **kafka_backend.base_config(settings),
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": settings.relay_compression,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            # The command bus lets events up to max_event_bytes through.
            "message.max.bytes": settings.max_event_bytes + 1_000,
            # Never give up on a message: while the broker is away, messages
            # wait. A transaction the coordinator aborts meanwhile (after
            # transaction.timeout.ms) fails its commit, and the relay starts
            # again from its recorded position. A failed batch fails the
            # transaction, so no gap is ever committed.
            "message.timeout.ms": 0,
            "error_cb": self._error,
        }
        #: The fatal error that stopped the producer, if one did.
        self.fatal: KafkaError | None = None
        #: True once a newer producer of ``transactional_id`` fenced this one.
        self.fenced = False
        with kafka_backend.translated(
            settings.kafka_bootstrap, "creating the relay's producer", refusals=True
        ):
            self._producer = Producer(config)
        self._seal = seal or Seal(settings.relay_seal_key)
        self._open = False
        self._admin = kafka_backend.admin(settings)
        self._topics: set[str] = set()
        self._partitions: dict[str, list[int]] = {}
        self._partitions_at = float("-inf")
        #: (topic, partition) -> the (position, partition count) last marked there.
        self._marked: dict[tuple[str, int], tuple[int, int]] = {}

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Re-raise librdkafka's errors as KafkaTrouble, noting a fencing first."""
        try:
            yield
        except KafkaException as exc:
            raise self._trouble(exc) from exc

    def _trouble(self, exc: KafkaException) -> KafkaTrouble:
        if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].code() in FENCED:
            self.fenced = True
        return KafkaTrouble(kafka_backend.describe_error(exc))

    def refused_as_too_large(self, error: BaseException) -> bool:
        """True if ``error`` (or its cause) is librdkafka refusing a message as too large."""
        return TOO_LARGE in str(error) or TOO_LARGE in str(error.__cause__ or "")

    def _error(self, error: KafkaError) -> None:
        if error.fatal():
            self.fatal = error
        if error.code() in FENCED:
            # Later calls raise a bare "fatal error"; remember why.
            self.fenced = True
        if not error.fatal():
            BROKERS.error(error)
        if error.code() in _UNREACHABLE and self._on_unreachable is not None:
            self._on_unreachable(BROKERS.cause(self.settings.kafka_bootstrap) or error.str())
        elif error.fatal() and TOO_LARGE not in error.str():
            # A refusal as too large is named, with its event, by the relay.
            log.error("Kafka producer fatal error: %s", error.str())

    def ensure_topic(self, topic: str) -> None:
        """Create ``topic`` with the configured partitions if it is missing.

        Raises:
            ServiceUnavailable: the broker did not answer.
            PermanentError: the topic cannot be created (bad name, refused).
        """
        if topic in self._topics:
            return
        if kafka_backend.create_topic(self._admin, self.settings, topic):
            log.info("created topic %s with %d partitions", topic, self.settings.topic_partitions)
        self._topics.add(topic)

    def max_message_bytes(self, topic: str, default: int) -> int:
        """The broker's ``max.message.bytes`` for ``topic``, or ``default`` if it does not say."""
        resource = ConfigResource(ResourceType.TOPIC, topic)
        try:
            described = self._admin.describe_configs([resource])[resource]
            entries = described.result(timeout=self.settings.connect_timeout)
            return int(entries["max.message.bytes"].value)
        except (KafkaException, KeyError, TypeError, ValueError, TimeoutError):
            return default

    # -- transactions ---------------------------------------------------------

    def fence(self, timeout: float) -> bool:
        """Take over the ``transactional_id``: abort and fence any older producer of it.

        True when done; False when it did not finish within ``timeout``
        (call again). Idempotent.

        Raises:
            KafkaTrouble: a fatal error (for example: not authorised to
                use the transactional id).
        """
        with self._translated():
            if _finished(self._producer.init_transactions, timeout):
                return True
            # Waiting serves nothing: serve the errors and log lines that
            # say why the coordinator does not answer.
            self._producer.poll(0)
            return False

    @property
    def in_transaction(self) -> bool:
        """True between :meth:`begin` and a :meth:`commit` that returned True."""
        return self._open

    def begin(self) -> None:
        """Open a transaction unless one is open; idempotent."""
        with self._translated():
            if not self._open:
                self._producer.begin_transaction()
                self._open = True

    def commit(self, timeout: float) -> bool:
        """Deliver everything produced in the transaction and commit it.

        True once committed (or when no transaction is open); False when it
        did not finish within ``timeout``: call again, it goes on in the
        background.

        Raises:
            KafkaTrouble: a message failed (the transaction must be
                abandoned) or the producer was fenced by a newer one
                (:attr:`fenced` is then True).
        """
        with self._translated():
            if self._open and _finished(self._producer.commit_transaction, timeout):
                self._open = False
            return not self._open

    def produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]],
        *,
        partition: int | None = None,
    ) -> None:
        """Queue one message in the open transaction.

        ``partition`` None leaves the choice to librdkafka's partitioner
        (``consistent_random``: see :func:`cqrskit.relay.partition_for`).
        No callback per message: :meth:`commit` succeeds only if every
        message of the transaction was acknowledged. When the local queue is
        full, serves the producer's events until there is room.
        """
        chosen = -1 if partition is None else partition  # -1: librdkafka's RD_KAFKA_PARTITION_UA
        # A bare try, not _translated(): this runs once per published event.
        try:
            self._producer.produce(topic, value, key, chosen, headers=headers)
        except BufferError:
            while True:
                self._producer.poll(0.1)
                try:
                    self._producer.produce(topic, value, key, chosen, headers=headers)
                    return
                except BufferError:
                    continue
                except KafkaException as exc:
                    raise self._trouble(exc) from exc
        except KafkaException as exc:
            raise self._trouble(exc) from exc

    def partition_count(self, topic: str) -> int:
        """How many partitions ``topic`` has in the cluster now.

        Raises:
            ServiceUnavailable: the broker did not answer, or the topic did
                not show its partitions in time.
        """
        return kafka_backend.partition_count(self._admin, self.settings, topic)

    def known_partitions(self) -> dict[str, int]:
        """Partitions per topic as the last metadata refresh for watermarks saw them."""
        return {topic: len(partitions) for topic, partitions in self._partitions.items()}

    def publish_watermark(self, topology: Topology, position: int, *, wait: bool = False) -> None:
        """Tell every partition of every event topic: events up to ``position`` were sent.

        Produced after those events, so in each partition it arrives after
        every one of them: a consumer that reads it knows its partition holds
        nothing older that it has not seen (see docs/decisions/0004). A full
        queue drops the mark (a later one covers it), unless ``wait``: then
        delivery reports are served until there is room.

        A partition already marked at ``position``, with the same partition
        count, is not marked again: an idle relay sends nothing, and only a
        new topic or partition gets a mark of its own. The marks of a
        transaction that aborts are lost with it, and so is this publisher
        (the relay starts again with a new one), so what it remembers was
        committed or is still in the open transaction.
        """
        with self._translated():
            now = time.monotonic()
            if now - self._partitions_at > 2.0:  # new topics (a new projection) join soon
                self._partitions_at = now
                try:
                    metadata = self._producer.list_topics(timeout=self.settings.connect_timeout)
                except KafkaException as exc:
                    # The broker is away: keep marking the partitions we know;
                    # the marks wait in the queue with the events before them.
                    if self._on_unreachable is not None:
                        reason = BROKERS.cause(self.settings.kafka_bootstrap)
                        self._on_unreachable(reason or kafka_backend.describe_error(exc))
                else:
                    self._partitions = {
                        name: sorted(topic.partitions)
                        for name, topic in metadata.topics.items()
                        if topology.is_event_topic(name)
                    }
            said: list[tuple[str, str | bytes | None]] = [
                (HEADER_EVENT_TYPE, WATERMARK_EVENT_TYPE.encode()),
                (HEADER_POSITION, b"%d" % position),
            ]
            for topic, partitions in self._partitions.items():
                value = orjson.dumps({"watermark": position, "partitions": len(partitions)})
                for partition in partitions:
                    at, count = self._marked.get((topic, partition), (-1, 0))
                    if at >= position and count == len(partitions):
                        continue
                    self.begin()  # a watermark is fenced like the events before it
                    seal = self._seal.watermark(topic, partition, position, value)
                    sealed = [*said, (HEADER_SEAL, seal)]
                    while True:
                        try:
                            self._producer.produce(
                                topic, value, None, partition=partition, headers=sealed
                            )
                            self._marked[(topic, partition)] = (position, len(partitions))
                            break
                        except BufferError:
                            if not wait:
                                return  # the queue is full of events; a later mark covers this one
                            self._producer.poll(0.1)

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks, waiting up to ``timeout`` seconds for one.

        Raises:
            KafkaTrouble: librdkafka declared the producer dead (a fatal
                error, such as a batch refused under the gapless guarantee);
                the messages still in it will never be delivered, and not
                every one of them gets a delivery report saying so.
        """
        with self._translated():
            self._producer.poll(timeout)
            if self.fatal is not None:
                raise KafkaException(self.fatal)

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` for every queued message; return how many remain."""
        with self._translated():
            return int(self._producer.flush(timeout))

    def abandon(self, timeout: float) -> None:
        """Abort the open transaction and drop every queued message; best effort.

        After a failure, or once this relay lost the lead, everything after
        the recorded position is sent again by a new producer, whose
        :meth:`fence` aborts whatever of this one's still reaches the broker.
        Never raises: a fenced or failed producer raises its fatal error from
        every call, and there is nothing left to save in it.
        """
        opened, self._open = self._open, False
        self._marked.clear()  # the marks of the aborted transaction are gone
        with contextlib.suppress(KafkaException, SystemError):
            if opened and self.fatal is None:
                self._producer.abort_transaction(timeout)
        # A fatal error that arrives while the last events are served may
        # surface as a SystemError of the callback it was serving; the
        # producer is dropped and everything after the recorded position is
        # sent again anyway.
        with contextlib.suppress(KafkaException, SystemError):
            self._producer.purge(in_queue=True, in_flight=True)
            self._producer.poll(0)

    def pending(self) -> int:
        """Messages queued or in flight, not yet acknowledged."""
        return len(self._producer)
