"""Members of consumer groups that notice when they stay out of their group.

After a broker restart librdkafka sometimes never rejoins the group: its
coordinator connection keeps one request queued, times it out every minute,
and the consumer is assigned nothing, for good, while every other client in
the process works. Closing it then waits on the same coordinator and never
returns. Decision 0015: a :class:`GroupMember` reads its consumer's own
statistics, and when the group has not been steady for longer than a
patience while the cluster answers metadata requests, it abandons that
consumer and joins with a new one. Workers' effects are guarded and saga
runners record their positions, so whatever the new member is given again
is a no-op.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

log = logging.getLogger("cqrskit.kafka")

Rebalanced = Callable[[Consumer, list[TopicPartition]], None]


@dataclass(frozen=True)
class Rebalancing:
    """What a :class:`GroupMember` calls when its partitions change.

    ``on_rejoin`` runs before a new consumer joins: what the old one was
    assigned is gone, and no revoke callback says so.
    """

    on_assign: Rebalanced
    on_revoke: Rebalanced | None = None
    on_rejoin: Callable[[], None] | None = None


@dataclass(frozen=True)
class MemberTimeouts:
    """How a :class:`GroupMember` waits, in seconds."""

    #: For its group to be steady again before it joins with a new consumer.
    patience: float
    #: For a consumer to close (leave the group) before leaving it behind.
    close_seconds: float
    #: For the cluster to answer the metadata request that tells it is there.
    probe_seconds: float


#: How often librdkafka reports its statistics to the watch (milliseconds).
STATISTICS_INTERVAL_MS = 1000


class GroupWatch:
    """Remembers when librdkafka last reported the consumer's group as steady.

    Fed by the consumer's ``stats_cb`` (served from ``poll``, on the worker's
    own thread). A group is steady when its coordinator is up and no join or
    rebalance is in progress, whether or not it holds partitions: a member
    with nothing assigned (more workers than partitions) is steady too. And
    a steady member heartbeats: when the group coordinator's connection has
    sent no request since the last report, librdkafka's "up, steady" is not
    believed (after a broker restart its heartbeat may sit in that queue,
    never sent, while the state still reads steady).
    """

    def __init__(
        self,
        patience: float,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_seconds: float = 3.0,
    ):
        self.patience = patience
        self._clock = clock
        #: How long the coordinator may send nothing: three missed heartbeats.
        self._silence = 3 * heartbeat_seconds
        self._steady_at = clock()
        #: The last group state reported, as ``state/join_state``.
        self.state = "starting"
        #: Requests the group coordinator's connection had sent, and since when.
        self._sent: int | None = None
        self._sent_at = self._steady_at

    def restart(self) -> None:
        """A new consumer: its patience starts now."""
        self._steady_at = self._clock()
        self.state = "starting"
        self._sent = None
        self._sent_at = self._steady_at

    def on_stats(self, raw: str) -> None:
        """librdkafka's statistics callback."""
        try:
            report = orjson.loads(raw)
            group = report.get("cgrp") or {}
            coordinator = (report.get("brokers") or {}).get("GroupCoordinator") or {}
        except (orjson.JSONDecodeError, AttributeError):
            return
        state, join = group.get("state"), group.get("join_state")
        if state is None:
            return
        self.state = f"{state}/{join}"
        if state != "up" or join != "steady":
            return
        sent = coordinator.get("tx")
        if not isinstance(sent, int):  # no coordinator reported: the state alone
            self._steady_at = self._clock()
            return
        now = self._clock()
        if self._sent is None or sent > self._sent:
            self._sent, self._sent_at = sent, now
        silent = now - self._sent_at
        if silent <= self._silence:
            self._steady_at = now
        else:
            queued = coordinator.get("outbuf_cnt", 0)
            self.state += f", coordinator sent nothing for {silent:.0f} s ({queued} queued)"

    def unsteady_for(self) -> float:
        """Seconds since the group was last reported steady."""
        return self._clock() - self._steady_at

    def stuck(self) -> bool:
        """True once the group has not been steady for longer than the patience."""
        return self.unsteady_for() > self.patience


def close_within(close: Callable[[], object], seconds: float, what: str) -> bool:
    """Call ``close()`` on a thread of its own and wait at most ``seconds``.

    A consumer whose coordinator never answers blocks in ``close`` forever;
    the process must still stop. Returns False (and leaves the thread
    behind, a daemon) when the call did not return in time.
    """
    done = threading.Event()

    def run() -> None:
        try:
            close()
        except Exception as exc:  # a consumer already broken: nothing to keep
            log.debug("%s: close failed: %s", what, exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"close {what}", daemon=True).start()
    if done.wait(seconds):
        return True
    log.warning("%s: the consumer did not close within %.0f s; left behind", what, seconds)
    return False


class GroupMember:
    """One process's membership of a consumer group, kept alive across a stuck coordinator.

    ``consumer`` is the current consumer; it changes when :meth:`check`
    replaces a stuck one, so callers read it again after each check.
    ``on_rejoin`` runs before the new consumer joins: what the old one was
    assigned is gone, and no revoke callback says so.
    """

    def __init__(
        self,
        name: str,
        config: dict[str, Any],
        topics: list[str],
        timeouts: MemberTimeouts,
        rebalancing: Rebalancing,
    ):
        self.name = name
        self.topics = topics
        heartbeat_ms = config.get("heartbeat.interval.ms", 3000)
        self.watch = GroupWatch(timeouts.patience, heartbeat_seconds=heartbeat_ms / 1000)
        passed_on = config.get("stats_cb")

        def on_stats(raw: str) -> None:
            self.watch.on_stats(raw)
            if passed_on is not None:
                passed_on(raw)

        self._config = {
            **config,
            "statistics.interval.ms": STATISTICS_INTERVAL_MS,
            "stats_cb": on_stats,
        }
        self._close_seconds = timeouts.close_seconds
        self._probe_seconds = timeouts.probe_seconds
        self._on_assign = rebalancing.on_assign
        self._on_revoke = rebalancing.on_revoke
        self._on_rejoin = rebalancing.on_rejoin
        self.consumer = self._join()

    def _join(self) -> Consumer:
        self.watch.restart()
        consumer = Consumer(self._config)
        if self._on_revoke is None:
            consumer.subscribe(self.topics, on_assign=self._on_assign)
        else:
            consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        return consumer

    def check(self) -> Consumer:
        """The consumer to poll: a new one when the current one is stuck out of its group.

        While the cluster itself is away, waiting is right: the consumer
        rejoins on its own once it is back.
        """
        if not self.watch.stuck():
            return self.consumer
        try:
            self.consumer.list_topics(timeout=self._probe_seconds)
        except KafkaException:
            self.watch.restart()  # the cluster is away: give it another patience
            return self.consumer
        log.warning(
            "%s: the consumer has been out of its group for %.0f s (%s) while the cluster "
            "answers; joining again with a new consumer",
            self.name,
            self.watch.unsteady_for(),
            self.watch.state,
        )
        close_within(self.consumer.close, self._close_seconds, self.name)
        if self._on_rejoin is not None:
            self._on_rejoin()
        self.consumer = self._join()
        return self.consumer

    def close(self) -> None:
        """Leave the group, waiting no longer than the close time-out."""
        close_within(self.consumer.close, self._close_seconds, self.name)
