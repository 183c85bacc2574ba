"""Kafka's :class:`~cqrskit.subscription.Subscription`: one member of a consumer group.

It creates the topics it reads (a consumer group formed before its topics
exist would leave their partitions out), joins through a
:class:`~cqrskit.adapters.kafka._group.GroupMember` (which joins again with
a new consumer when librdkafka stays out of its group, decision 0015),
commits nothing by itself (``enable.auto.commit`` is off: the stage commits
what it has handled) and starts a group new to a partition at its earliest
offset. confluent-kafka's types stay in here: the stage sees
:class:`~cqrskit.subscription.Message` and
:class:`~cqrskit.subscription.Partition`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Message as KafkaMessage

from cqrskit.adapters.kafka._client import (
    admin,
    create_topic,
    group_config,
    headers_of,
    member_timeouts,
    wait_for_topics,
)
from cqrskit.adapters.kafka._errors import translated
from cqrskit.adapters.kafka._group import GroupMember, Rebalancing
from cqrskit.errors import PermanentError
from cqrskit.settings import Settings
from cqrskit.subscription import Assigned, Message, Partition, Rejoined, Revoked

__all__ = ["PROJECTION_CONFIG", "KafkaSubscription", "delivered"]

log = logging.getLogger("cqrskit.kafka")


#: What a projection worker adds to a member's settings: a batch may take
#: long (an outage retried in place), and a rebalance moves only the
#: partitions that change owner.
PROJECTION_CONFIG: dict[str, Any] = {
    "max.poll.interval.ms": 600_000,
    "partition.assignment.strategy": "cooperative-sticky",
}


def _message(message: KafkaMessage) -> Message:
    _kind, at = message.timestamp()
    return Message(
        topic=str(message.topic()),
        partition=int(message.partition() or 0),
        offset=int(message.offset() or 0),
        value=message.value() or b"",
        headers=headers_of(message),
        key=message.key(),
        timestamp=at / 1000 if at > 0 else 0.0,
    )


def delivered(received: Sequence[KafkaMessage], name: str) -> list[Message]:
    """The data messages among ``received``, as plain records.

    Raises:
        PermanentError: one carries a fatal consumer error.
    """
    messages: list[Message] = []
    for message in received:
        error = message.error()
        if error is None:
            messages.append(_message(message))
        elif error.fatal():
            raise PermanentError(f"{name}: the Kafka consumer failed: {error}")
    return messages


class KafkaSubscription:
    """Membership of the consumer group ``group`` on ``topics``.

    ``name`` says who the member is in logs ("saga order_workflow");
    ``config`` adds to (or overrides) the consumer's settings.
    """

    def __init__(
        self,
        settings: Settings,
        name: str,
        group: str,
        topics: Sequence[str],
        config: Mapping[str, Any] | None = None,
    ):
        self.settings = settings
        self.name = name
        self.group = group
        self.topics = list(topics)
        self._config: dict[str, Any] = {
            **group_config(settings),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "on_commit": self._committed,
            **(config or {}),
        }
        self._cooperative = "cooperative" in str(
            self._config.get("partition.assignment.strategy", "")
        )
        self._member: GroupMember | None = None

    def subscribe(
        self,
        on_assigned: Assigned,
        on_revoked: Revoked | None = None,
        on_rejoined: Rejoined | None = None,
    ) -> None:
        """Create the topics unless they exist, wait for their metadata, join the group.

        Raises:
            ServiceUnavailable: the cluster did not answer; call it again.
            PermanentError: the cluster refused to create a topic.
        """
        if self._member is not None:
            return
        client = admin(self.settings)
        for topic in self.topics:
            create_topic(client, self.settings, topic)
        wait_for_topics(client, self.settings, self.topics)

        def assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if partitions:
                log.info(
                    "%s: assigned %s",
                    self.name,
                    ", ".join(f"{p.topic}[{p.partition}]" for p in partitions),
                )
            starts = on_assigned([Partition(p.topic, p.partition) for p in partitions])
            if not starts and self._cooperative:
                return  # the client assigns them incrementally, at the committed offsets
            for partition in partitions:
                start = starts.get(Partition(partition.topic, partition.partition))
                if start is not None:
                    partition.offset = start
            if self._cooperative:
                consumer.incremental_assign(partitions)
            else:
                consumer.assign(partitions)

        revoked = None
        if on_revoked is not None:
            on_revoked_ = on_revoked

            def revoked(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
                if partitions:
                    log.info(
                        "%s: revoked %s",
                        self.name,
                        ", ".join(f"{p.topic}[{p.partition}]" for p in partitions),
                    )
                on_revoked_([Partition(p.topic, p.partition) for p in partitions])

        self._member = GroupMember(
            self.name,
            self._config,
            self.topics,
            member_timeouts(self.settings),
            Rebalancing(assigned, revoked, on_rejoined),
        )
        log.info("%s: consuming %s as group %s", self.name, self.topics, self.group)

    def _consumer(self) -> Consumer:
        if self._member is None:
            raise RuntimeError(f"{self.name}: poll or commit before subscribe")
        return self._member.check()

    def poll(self, max_messages: int, timeout: float) -> Sequence[Message]:
        """Up to ``max_messages`` messages: wait for one, then take what is already fetched.

        A batch never waits to fill up, so latency stays low. Messages
        carrying a consumer error are left out.

        Raises:
            PermanentError: the consumer failed for good (a fatal error).
        """
        consumer = self._consumer()
        first = consumer.poll(timeout)
        if first is None:
            return []
        received = [first]
        if max_messages > 1:
            received += consumer.consume(max_messages - 1, timeout=0)
        return delivered(received, self.name)

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit the next offsets to read, asynchronously.

        Raises:
            ServiceUnavailable: librdkafka refused the request.
        """
        if not offsets or self._member is None:
            return
        with translated(self.settings.kafka_bootstrap, "committing offsets"):
            self._member.consumer.commit(
                offsets=[TopicPartition(p.topic, p.partition, o) for p, o in offsets.items()],
                asynchronous=True,
            )

    def committed(self, partitions: Sequence[Partition]) -> Mapping[Partition, int | None]:
        """The group's committed offset per partition (None where nothing was committed).

        Raises:
            ServiceUnavailable: the cluster did not answer in time.
        """
        consumer = self._consumer()
        with translated(self.settings.kafka_bootstrap, "reading committed offsets"):
            found = consumer.committed(
                [TopicPartition(p.topic, p.partition) for p in partitions],
                timeout=self.settings.connect_timeout,
            )
        return {
            Partition(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None for tp in found
        }

    def positions(self) -> Mapping[Partition, int]:
        """The next offset :meth:`poll` returns per assigned partition that has one.

        Raises:
            ServiceUnavailable: librdkafka could not say.
        """
        consumer = self._consumer()
        with translated(self.settings.kafka_bootstrap, "reading positions"):
            found = consumer.position(consumer.assignment())
        return {Partition(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}

    def pause_at(self, partition: Partition, offset: int) -> None:
        """Stop delivering ``partition`` and rewind it to ``offset``, until :meth:`resume`."""
        consumer = self._consumer()
        at = TopicPartition(partition.topic, partition.partition, offset)
        with translated(self.settings.kafka_bootstrap, "pausing a partition"):
            consumer.pause([at])
            consumer.seek(at)

    def resume(self, partitions: Sequence[Partition]) -> None:
        """Deliver ``partitions`` again."""
        if not partitions:
            return
        consumer = self._consumer()
        with translated(self.settings.kafka_bootstrap, "resuming partitions"):
            consumer.resume([TopicPartition(p.topic, p.partition) for p in partitions])

    def lag(self) -> int | None:
        """Messages not delivered yet, from the high watermarks the fetches brought.

        No round trip (``cached=True``): the loop is never held up by it.
        None when the consumer cannot say now (the cluster away).
        """
        if self._member is None:
            return None
        consumer = self._member.consumer
        try:
            lag = 0
            for partition in consumer.position(consumer.assignment()):
                low, high = consumer.get_watermark_offsets(partition, cached=True)
                if high < 0:
                    continue  # nothing fetched from this partition yet
                start = partition.offset if partition.offset >= 0 else max(low, 0)
                lag += max(0, high - start)
        except (KafkaException, RuntimeError) as exc:
            log.debug("%s: lag not measured: %s", self.name, exc)
            return None
        return lag

    def _committed(self, error: KafkaError | None, _partitions: list[TopicPartition]) -> None:
        if error is not None and error.code() != KafkaError._NO_OFFSET:
            # Typically a rebalance took the partition away: its new owner
            # gets the messages again, and the consumer's guards make that a no-op.
            log.info("%s: offsets not committed: %s", self.name, error)

    def close(self) -> None:
        """Leave the group, waiting no longer than the close time-out; idempotent."""
        if self._member is not None:
            member, self._member = self._member, None
            member.close()
