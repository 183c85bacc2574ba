"""A leader that is alive but silent (paused, partitioned) is replaced and fenced.

Issue 15, "Nothing lost, for real": a relay leader stopped with SIGSTOP kept
its PostgreSQL session and its advisory lock, and no standby took over.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time

from cqrskit.relay import RelayStatus
from tests.integration.relay.conftest import (
    CommandStream,
    RelayHarness,
    assert_in_order_and_complete,
    read_partitions,
    stored_events,
    wait_until,
)


class PositionWatch:
    """Reads the recorded position in a thread and keeps every change of it."""

    def __init__(self, relays: RelayHarness):
        self.relays = relays
        self.seen: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            status = self.relays.status()
            entry = (status.position, status.active_instance)
            if not self.seen or self.seen[-1] != entry:
                self.seen.append(entry)
            self._stop.wait(0.05)

    def __enter__(self) -> PositionWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_a_paused_leader_is_replaced_within_15s_and_fenced_when_it_wakes(
    relays: RelayHarness,
) -> None:
    first, second = relays.start_leader_and_standby()
    with CommandStream(relays.settings) as stream:
        wait_until(lambda: stream.accepted >= 300, 60, "commands under the first relay")
        first.proc.send_signal(signal.SIGSTOP)
        paused_at = time.monotonic()
        recorded_at_pause = relays.status().position

        def second_publishes() -> RelayStatus | None:
            status = relays.status()
            leads = (status.active_instance or "").endswith(second.instance_suffix)
            return status if leads and status.position > recorded_at_pause else None

        taken_over = wait_until(second_publishes, 15, "the standby to publish")
        takeover = time.monotonic() - paused_at
        with PositionWatch(relays) as watch:
            first.proc.send_signal(signal.SIGCONT)
            # The woken leader runs its loop again: it must notice it lost
            # the lead (lease expired, session ended, or producer fenced,
            # whichever it meets first) and stand by, recording nothing.
            wait_until(
                lambda: "standing by" in first.output(),
                30,
                "the woken leader to stand by",
            )
            after = stream.accepted
            wait_until(lambda: stream.accepted >= after + 300, 60, "commands after the wake-up")
            relays.wait_caught_up()
    assert not stream.errors
    positions = [position for position, _ in watch.seen]
    assert positions == sorted(positions), f"the recorded position went back: {watch.seen}"
    instances = {instance for _, instance in watch.seen if instance}
    assert all(i.endswith(second.instance_suffix) for i in instances), watch.seen
    assert taken_over.position >= recorded_at_pause

    stored = stored_events(relays.settings)
    partitions = read_partitions(relays.settings, relays.prefix, set(stored))
    assert_in_order_and_complete(partitions.delivered(), stored)
    # The new leader starts again after the position recorded when the old
    # one paused: each partition's positions rise, drop once at most (the
    # re-sent unrecorded tail), and then rise to the end. A zombie's message
    # landing after the new leader's would be a second drop.
    for partition, sequence in partitions.positions.items():
        drops = [(a, b) for a, b in itertools.pairwise(sequence) if b < a]
        assert len(drops) <= 1, f"{partition}: positions went back more than once: {drops[:5]}"
        assert all(b > recorded_at_pause for _, b in drops), f"{partition}: {drops}"
    # A consumer guarding per partition (decision 0003) applies every
    # stored event exactly once.
    applied = partitions.applied_with_partition_guard()
    assert sorted(applied) == sorted(stored), "an event was skipped or applied twice"
    print(
        f"take-over in {takeover:.1f}s; {len(partitions.delivered().duplicates())} "
        "duplicates re-sent"
    )
