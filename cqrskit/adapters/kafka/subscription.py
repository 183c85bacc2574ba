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

from confluent_kafka import Consumer, TopicPartition
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
from cqrskit.adapters.kafka._group import GroupMember
from cqrskit.settings import Settings
from cqrskit.subscription import Assigned, Message, Partition, Rejoined, Revoked

__all__ = ["KafkaSubscription"]

log = logging.getLogger("cqrskit.kafka")


def _message(message: KafkaMessage) -> Message:
    return Message(
        topic=str(message.topic()),
        partition=int(message.partition() or 0),
        offset=int(message.offset() or 0),
        value=message.value() or b"",
        headers=headers_of(message),
    )


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
            **(config or {}),
        }
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
            starts = on_assigned([Partition(p.topic, p.partition) for p in partitions])
            for partition in partitions:
                start = starts.get(Partition(partition.topic, partition.partition))
                if start is not None:
                    partition.offset = start
            consumer.assign(partitions)

        revoked = None
        if on_revoked is not None:
            on_revoked_ = on_revoked

            def revoked(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
                on_revoked_([Partition(p.topic, p.partition) for p in partitions])

        self._member = GroupMember(
            self.name,
            self._config,
            self.topics,
            member_timeouts(self.settings),
            on_assign=assigned,
            on_revoke=revoked,
            on_rejoin=on_rejoined,
        )
        log.info("%s: consuming %s as group %s", self.name, self.topics, self.group)

    def _consumer(self) -> Consumer:
        if self._member is None:
            raise RuntimeError(f"{self.name}: poll or commit before subscribe")
        return self._member.check()

    def poll(self, max_messages: int, timeout: float) -> Sequence[Message]:
        """Up to ``max_messages`` messages; those carrying a consumer error are left out."""
        consumer = self._consumer()
        if max_messages == 1:
            one = consumer.poll(timeout)
            received = [] if one is None else [one]
        else:
            received = consumer.consume(max_messages, timeout=timeout)
        return [_message(m) for m in received if m.error() is None]

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

    def close(self) -> None:
        """Leave the group, waiting no longer than the close time-out; idempotent."""
        if self._member is not None:
            member, self._member = self._member, None
            member.close()
