"""The Subscription contract: one behaviour, in memory and on Kafka.

:class:`SubscriptionContract` holds what a consuming stage relies on:
messages as plain records in offset order per partition, start offsets
chosen on assignment, earliest for a new group, and committed offsets where
the next member of the group resumes; and what a projection worker adds
(:class:`~cqrskit.subscription.PausableSubscription`): committed offsets
and positions read back, a partition held at a message and resumed, the lag.
Each implementation subclasses it with a ``harness`` fixture that builds
members and publishes messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import pytest
from confluent_kafka import Producer

from cqrskit import Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.kafka.subscription import KafkaSubscription
from cqrskit.adapters.memory.subscription import MemorySubscription, MemoryTopics
from cqrskit.subscription import Message, Partition, PausableSubscription
from tests.integration.conftest import kafka_topic, kafka_up, settings, unique_name

__all__ = ["kafka_topic", "kafka_up", "settings", "unique_name"]


@dataclass
class Harness:
    """Members of groups on ``topic``, and a way to publish to it."""

    topic: str
    member: Callable[[str], PausableSubscription]
    publish: Callable[[int, bytes, Mapping[str, bytes]], None]
    #: How long a member may take to join and see a message.
    patience: float


def everything(_partitions: list[Partition]) -> dict[Partition, int]:
    return {}


def received(subscription: PausableSubscription, count: int, patience: float) -> list[Message]:
    found: list[Message] = []
    deadline = time.monotonic() + patience
    while len(found) < count and time.monotonic() < deadline:
        found += subscription.poll(10, 0.2)
    return found


def wait_for(condition: Callable[[], bool], patience: float) -> bool:
    """True once ``condition`` holds, False if ``patience`` seconds passed first."""
    deadline = time.monotonic() + patience
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling a remote condition
    return True


def by_partition(messages: Sequence[Message]) -> dict[int, list[bytes]]:
    found: dict[int, list[bytes]] = {}
    for message in messages:
        found.setdefault(message.partition, []).append(message.value)
    return found


class SubscriptionContract:
    """What every Subscription does; subclasses provide the ``harness`` fixture."""

    def test_messages_arrive_as_plain_records_in_order(self, harness: Harness) -> None:
        member = harness.member("readers")
        assigned: list[Partition] = []
        member.subscribe(lambda partitions: assigned.extend(partitions) or {})
        try:
            harness.publish(1, b"first", {"event-type": b"Order.Placed"})
            harness.publish(1, b"second", {})
            harness.publish(0, b"other", {})
            messages = received(member, 3, harness.patience)
        finally:
            member.close()
        assert by_partition(messages) == {0: [b"other"], 1: [b"first", b"second"]}
        first = next(m for m in messages if m.value == b"first")
        assert (first.topic, first.partition, first.offset) == (harness.topic, 1, 0)
        assert first.headers == {"event-type": b"Order.Placed"}
        assert first.next_offset == 1
        assert first.source == Partition(harness.topic, 1)
        assert Partition(harness.topic, 1) in assigned

    def test_start_offsets_chosen_on_assignment_are_kept(self, harness: Harness) -> None:
        for value in (b"a", b"b", b"c"):
            harness.publish(0, value, {})
        member = harness.member("skippers")

        def from_two(partitions: list[Partition]) -> dict[Partition, int]:
            return {p: 2 for p in partitions if p.partition == 0}

        member.subscribe(from_two)
        try:
            messages = received(member, 1, harness.patience)
        finally:
            member.close()
        assert [m.value for m in messages] == [b"c"]

    def test_the_next_member_resumes_from_the_committed_offsets(self, harness: Harness) -> None:
        for value in (b"a", b"b", b"c"):
            harness.publish(2, value, {})
        member = harness.member("resumers")
        member.subscribe(everything)
        try:
            messages = received(member, 3, harness.patience)
            assert [m.value for m in messages] == [b"a", b"b", b"c"]
            b = messages[1]
            assert member.committed([b.source]) == {b.source: None}
            member.commit({b.source: b.next_offset})
            # The commit is asynchronous: wait until the group says it has it.
            assert wait_for(lambda: member.committed([b.source]) == {b.source: 2}, harness.patience)
        finally:
            member.close()
        successor = harness.member("resumers")
        successor.subscribe(everything)
        try:
            assert [m.value for m in received(successor, 1, harness.patience)] == [b"c"]
        finally:
            successor.close()

    def test_a_paused_partition_is_held_at_its_message_until_resumed(
        self, harness: Harness
    ) -> None:
        for value in (b"a", b"b", b"c"):
            harness.publish(0, value, {})
        member = harness.member("holders")
        member.subscribe(everything)
        try:
            assert [m.value for m in received(member, 3, harness.patience)] == [b"a", b"b", b"c"]
            held = Partition(harness.topic, 0)
            assert member.positions().get(held) == 3
            member.pause_at(held, 1)
            harness.publish(1, b"elsewhere", {})
            while_held = received(member, 1, harness.patience)
            assert [m.value for m in while_held] == [b"elsewhere"]
            assert list(member.poll(10, 0.2)) == []
            member.resume([held])
            again = received(member, 2, harness.patience)
        finally:
            member.close()
        assert [(m.partition, m.offset, m.value) for m in again] == [(0, 1, b"b"), (0, 2, b"c")]

    def test_the_lag_counts_what_was_not_delivered_yet(self, harness: Harness) -> None:
        harness.publish(2, b"a", {})
        member = harness.member("laggards")
        member.subscribe(everything)
        try:
            assert [m.value for m in received(member, 1, harness.patience)] == [b"a"]
            harness.publish(2, b"b", {})
            harness.publish(2, b"c", {})
            assert wait_for(lambda: member.lag() == 2, harness.patience)
            assert len(received(member, 2, harness.patience)) == 2
            assert wait_for(lambda: member.lag() == 0, harness.patience)
        finally:
            member.close()

    def test_poll_with_nothing_to_read_is_empty(self, harness: Harness) -> None:
        member = harness.member("idle")
        member.subscribe(everything)
        try:
            assert list(member.poll(10, 0.1)) == []
        finally:
            member.close()

    def test_close_is_idempotent_and_safe_before_subscribe(self, harness: Harness) -> None:
        never = harness.member("never")
        never.close()
        member = harness.member("twice")
        member.subscribe(everything)
        member.close()
        member.close()


class TestMemorySubscription(SubscriptionContract):
    @pytest.fixture
    def harness(self) -> Harness:
        broker = MemoryTopics(partitions=3)

        def publish(partition: int, value: bytes, headers: Mapping[str, bytes]) -> None:
            broker.append("shop.Order", partition, value, headers)

        return Harness(
            "shop.Order",
            lambda group: MemorySubscription(broker, group, ["shop.Order"]),
            publish,
            patience=1.0,
        )


@pytest.mark.integration
class TestKafkaSubscription(SubscriptionContract):
    @pytest.fixture
    def harness(self, settings: Settings, kafka_topic: str) -> Iterator[Harness]:
        producer = Producer(kafka_backend.base_config(settings))

        def publish(partition: int, value: bytes, headers: Mapping[str, bytes]) -> None:
            producer.produce(kafka_topic, value, partition=partition, headers=dict(headers))
            assert producer.flush(30) == 0

        def member(group: str) -> PausableSubscription:
            return KafkaSubscription(
                settings, f"test {group}", f"{kafka_topic}.{group}", [kafka_topic]
            )

        yield Harness(kafka_topic, member, publish, patience=60.0)
        producer.flush(30)
