"""Holding back a topic's events of a new partition layout until the old one is complete.

When a topic moves onto more partitions (``cqrskit relay repartition``), an
aggregate's events up to the move's boundary are on its old partition and
the later ones may be on another, read by another member of the group or
simply fetched first. The relay marks every event after the boundary with
``<boundary>:<previous count>`` (header ``layout``); a worker applies such an
event only once every partition of the previous layout is complete up to the
boundary, as the projection's checkpoints (written by every member, after
the effects) say. Until then the partition is paused at that event, and
the rest of the batch goes on. See docs/decisions/0009.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from cqrskit.envelope import HEADER_LAYOUT
from cqrskit.errors import ServiceUnavailable
from cqrskit.projections._ports import ReadModel
from cqrskit.subscription import Message, Partition, PausableSubscription

__all__ = ["LayoutBarrier"]

log = logging.getLogger("cqrskit.projections")


def _parse(raw: bytes) -> tuple[int, int] | None:
    boundary, _, previous = raw.partition(b":")
    if not (boundary.isdigit() and previous.isdigit()):
        return None
    return int(boundary), int(previous)


class LayoutBarrier:
    """Decides, per message, whether the old layout of its topic is complete enough.

    Not thread-safe; one per worker consumer.
    """

    #: How often a held partition asks the checkpoints whether it may go on.
    CHECK_SECONDS = 0.5

    def __init__(self, read_model: ReadModel):
        self.read_model = read_model
        self._passed: set[tuple[str, int]] = set()
        #: (topic, partition) -> (boundary, previous count) it waits for.
        self._held: dict[tuple[str, int], tuple[int, int]] = {}
        self._checked_at = float("-inf")

    def admit(
        self, subscription: PausableSubscription, messages: Sequence[Message]
    ) -> list[Message]:
        """The messages that may be applied now, in order; holds back the others.

        A message waiting for its barrier pauses its partition and rewinds
        it to that message, so that it and everything after it in its
        partition come again once the barrier is passed. Checkpoints that
        cannot be read (Elasticsearch away) hold the message too: waiting is
        always safe, and the next check may pass.
        """
        admitted: list[Message] = []
        for message in messages:
            key = (message.topic, message.partition)
            if key in self._held:
                continue
            raw = message.headers.get(HEADER_LAYOUT)
            barrier = _parse(raw) if raw is not None else None
            if barrier is None or self._open(key[0], *barrier):
                admitted.append(message)
                continue
            self._held[key] = barrier
            subscription.pause_at(Partition(*key), message.offset)
            log.info(
                "%s[%d] waits at offset %d until the %d partitions of its previous layout "
                "are complete up to position %d",
                key[0],
                key[1],
                message.offset,
                barrier[1],
                barrier[0],
            )
        return admitted

    def resume_ready(self, subscription: PausableSubscription) -> None:
        """Resume the held partitions whose barrier is passed now (checked twice a second)."""
        if not self._held or time.monotonic() - self._checked_at < self.CHECK_SECONDS:
            return
        self._checked_at = time.monotonic()
        ready = [key for key, barrier in self._held.items() if self._open(key[0], *barrier)]
        for key in ready:
            del self._held[key]
        if ready:
            subscription.resume([Partition(topic, partition) for topic, partition in ready])

    def forget(self, partitions: Sequence[Partition]) -> None:
        """Partitions revoked: their next owner starts from the committed offset and decides."""
        for partition in partitions:
            self._held.pop((partition.topic, partition.partition), None)

    def _open(self, topic: str, boundary: int, previous: int) -> bool:
        if (topic, boundary) in self._passed:
            return True
        try:
            # The index this worker writes: checkpoints belong to a physical
            # index (decision 0011), and only its own say what it holds.
            index = self.read_model.serving()
            checkpoints = self.read_model.checkpoints(index=index) if index else []
        except ServiceUnavailable:
            return False
        complete: dict[int, int] = {}
        for c in checkpoints:
            if c.topic == topic:
                complete[c.partition] = max(complete.get(c.partition, 0), c.position)
        if all(complete.get(p, 0) >= boundary for p in range(previous)):
            self._passed.add((topic, boundary))
            return True
        return False
