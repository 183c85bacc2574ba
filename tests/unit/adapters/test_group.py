"""The group watch reads librdkafka's statistics (decision 0015)."""

from __future__ import annotations

import json
import threading
import time

from cqrskit.adapters.kafka._group import GroupWatch, close_within


def stats(state: str | None, join: str | None) -> str:
    group = {} if state is None else {"state": state, "join_state": join, "stateage": 10}
    return json.dumps({"name": "rdkafka#consumer-1", "cgrp": group})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_steady_group_is_never_stuck() -> None:
    clock = Clock()
    watch = GroupWatch(patience=60, clock=clock)
    for _ in range(10):
        clock.now += 30
        watch.on_stats(stats("up", "steady"))
        assert not watch.stuck()
    assert watch.state == "up/steady"


def test_a_group_out_of_steady_longer_than_the_patience_is_stuck() -> None:
    clock = Clock()
    watch = GroupWatch(patience=60, clock=clock)
    watch.on_stats(stats("up", "steady"))
    clock.now += 30
    watch.on_stats(stats("up", "wait-join"))
    assert not watch.stuck()
    clock.now += 31
    watch.on_stats(stats("up", "wait-join"))
    assert watch.stuck()
    assert watch.state == "up/wait-join"
    watch.on_stats(stats("up", "steady"))
    assert not watch.stuck()


def test_a_coordinator_that_is_away_is_not_steady_either() -> None:
    clock = Clock()
    watch = GroupWatch(patience=60, clock=clock)
    clock.now += 61
    watch.on_stats(stats("wait-coord", "steady"))
    assert watch.stuck()


def test_statistics_without_a_group_or_not_json_change_nothing() -> None:
    clock = Clock()
    watch = GroupWatch(patience=60, clock=clock)
    watch.on_stats(stats(None, None))
    watch.on_stats("not json")
    assert watch.state == "starting"
    clock.now += 61
    assert watch.stuck()
    watch.restart()
    assert not watch.stuck()


def test_a_close_that_never_returns_is_left_behind_in_bounded_time() -> None:
    release = threading.Event()
    started = time.monotonic()
    assert not close_within(lambda: release.wait(30), 0.2, "test")
    assert time.monotonic() - started < 5
    release.set()
    assert close_within(lambda: None, 5, "test")


def coordinated(state: str, join: str, sent: int, queued: int = 0) -> str:
    """Statistics whose group coordinator has sent ``sent`` requests, ``queued`` unsent."""
    coordinator = {"source": "logical", "tx": sent, "outbuf_cnt": queued}
    return json.dumps(
        {
            "cgrp": {"state": state, "join_state": join},
            "brokers": {"127.0.0.1:9092/1": {"tx": 999}, "GroupCoordinator": coordinator},
        }
    )


def test_a_steady_member_whose_coordinator_sends_nothing_is_stuck() -> None:
    # After a broker restart librdkafka may report the group up and steady
    # while its heartbeat sits in the coordinator's queue, never sent.
    clock = Clock()
    watch = GroupWatch(patience=60, clock=clock)
    for _ in range(20):
        clock.now += 1
        watch.on_stats(coordinated("up", "steady", sent=40, queued=1))
    assert not watch.stuck()
    for _ in range(50):
        clock.now += 1
        watch.on_stats(coordinated("up", "steady", sent=40, queued=1))
    # Three missed heartbeats (9 s), then the patience (60 s).
    assert not watch.stuck()
    for _ in range(5):
        clock.now += 1
        watch.on_stats(coordinated("up", "steady", sent=40, queued=1))
    assert watch.stuck()
    assert watch.state == "up/steady, coordinator sent nothing for 74 s (1 queued)"


def test_a_steady_member_that_heartbeats_is_never_stuck() -> None:
    clock = Clock()
    watch = GroupWatch(patience=60, clock=clock)
    for second in range(200):
        clock.now += 1
        # A heartbeat every three seconds; statistics every second.
        watch.on_stats(coordinated("up", "steady", sent=second // 3))
        assert not watch.stuck()
    assert watch.state == "up/steady"
