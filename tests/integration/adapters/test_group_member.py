"""A group member that stays out of its group while the cluster answers joins again (0015).

The fault reproduced here: a member whose JoinGroup is never completed.
Another member of the same (eager) group is alive, heartbeating, but never
polls, so it never gives up its partitions and the rebalance waits on it.
librdkafka's own stuck coordinator after a broker restart looks the same
from the watch's side: a group that is not steady while metadata answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition

from cqrskit import Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.kafka._group import GroupMember, MemberTimeouts, Rebalancing

TIMEOUTS = MemberTimeouts(patience=4.0, close_seconds=5.0, probe_seconds=3.0)


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, poll: Callable[[], None]
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        poll()


def config(settings: Settings, group: str) -> dict[str, object]:
    return {
        **kafka_backend.group_config(settings),
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": 120_000,
    }


def test_a_member_held_out_of_its_group_joins_again_once_the_hold_is_gone(
    settings: Settings, kafka_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    group = f"{kafka_topic}.group"
    holder_assigned: list[TopicPartition] = []
    holder = Consumer(config(settings, group))
    holder.subscribe(
        [kafka_topic],
        on_assign=lambda _c, p: holder_assigned.extend(p),
        on_revoke=lambda _c, _p: None,
    )
    wait_until(
        lambda: len(holder_assigned) == 3, 30, "the holder's assignment", lambda: holder.poll(0.2)
    )

    assigned: list[list[TopicPartition]] = []
    member = GroupMember(
        "test member",
        config(settings, group),
        [kafka_topic],
        TIMEOUTS,
        Rebalancing(lambda _c, p: assigned.append(p)),
    )
    first = member.consumer
    try:
        caplog.set_level(logging.WARNING, logger="cqrskit.kafka")
        # The holder stops polling: it never revokes, the rebalance never ends.
        wait_until(
            lambda: member.consumer is not first,
            60,
            "the member to give up its stuck consumer",
            lambda: member.check().poll(0.2),
        )
        assert not any(assigned), "a consumer held out of its group was assigned partitions"
        assert "out of its group" in caplog.text
        assert "while the cluster answers" in caplog.text

        holder.close()  # the hold is gone: the new consumer gets every partition
        wait_until(
            lambda: sum(len(p) for p in assigned) == 3,
            60,
            "the new consumer's assignment",
            lambda: member.check().poll(0.2),
        )
        assert sorted(p.partition for p in assigned[-1]) == [0, 1, 2]
    finally:
        member.close()


def test_a_member_whose_cluster_is_away_waits_instead_of_joining_again() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1")  # nothing listens there
    member = GroupMember(
        "test member",
        {**config(settings, "nobody"), "reconnect.backoff.max.ms": 1000},
        ["nothing"],
        MemberTimeouts(patience=0.5, close_seconds=2.0, probe_seconds=0.5),
        Rebalancing(lambda _c, _p: None),
    )
    first = member.consumer
    probes = 0

    def turn() -> None:
        nonlocal probes
        if member.watch.stuck():
            probes += 1
        member.check().poll(0.1)

    try:
        wait_until(lambda: probes >= 3, 30, "three patiences to pass", turn)
        assert member.consumer is first
    finally:
        member.close()


def test_a_steady_member_heartbeats_and_is_never_replaced(
    settings: Settings, kafka_topic: str
) -> None:
    # The watch believes "up, steady" only while the coordinator's connection
    # sends requests: a real member in a steady group must keep that true.
    assigned: list[TopicPartition] = []
    member = GroupMember(
        "test member",
        config(settings, f"{kafka_topic}.steady"),
        [kafka_topic],
        TIMEOUTS,
        Rebalancing(lambda _c, p: assigned.extend(p)),
    )
    first = member.consumer
    try:
        wait_until(
            lambda: len(assigned) == 3, 30, "the assignment", lambda: member.check().poll(0.2)
        )
        # Four times the patience, three heartbeats each: never judged stuck.
        deadline = time.monotonic() + 4 * TIMEOUTS.patience + 3 * 10 / 3
        while time.monotonic() < deadline:
            member.check().poll(0.2)
            assert not member.watch.stuck(), member.watch.state
        assert member.consumer is first
        assert member.watch.state == "up/steady"
    finally:
        member.close()
