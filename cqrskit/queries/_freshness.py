"""How far a read model's index is searchable: read-your-writes, from checkpoints only.

Checkpoints belong to a physical index, not to the projection (decision
0011; see :mod:`cqrskit.checkpoints` for the record and the rule that
judges it). The index holds every event up to position P when every
partition of every topic it reads is covered up to P. A worker records,
with each checkpoint, how far that partition's effects were already
searchable (it refreshes the index itself, at the projection's
``freshness``): a query that waits for P waits for *searchable* up to P,
so it never refreshes the index (decision 0020). The query side reads
those checkpoints through a :class:`CheckpointReader`; it never asks
PostgreSQL or Kafka.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cqrskit.checkpoints import FILL_WRITER, WORKER_WRITER, Checkpoint, Coverage, coverage
from cqrskit.queries._ports import AsyncCheckpointReader, CheckpointReader
from cqrskit.topology import IndexNames

__all__ = [
    "FILL_WRITER",
    "WORKER_WRITER",
    "AsyncPositionWatch",
    "Coverage",
    "Reached",
    "applied_position",
    "coverage",
    "covered_position",
    "serving_index",
    "wait_for_position",
]

#: First and longest pause between two looks at the checkpoints of a wait.
_FIRST_PAUSE, _LONGEST_PAUSE = 0.005, 0.05


@dataclass(frozen=True)
class Reached:
    """Where a wait for a position ended."""

    #: The index in service that has the position searchable; None if the wait timed out.
    index: str | None
    #: How far the index in service was searchable when the wait ended.
    searchable: int


def covered_position(hits: Sequence[Checkpoint], *, searchable: bool = False) -> int:
    """The position up to which one index's checkpoints cover every partition (0 if unknown).

    Pure. With ``searchable``, how far the effects are searchable, not only applied.
    """
    if not hits:
        return 0
    topics = set(hits[0].topics)
    counts: dict[str, int] = {}
    for hit in hits:
        counts[hit.topic] = max(counts.get(hit.topic, 0), hit.partitions)
    covered = coverage(hits, searchable=searchable)
    for topic in topics or counts:
        expected = counts.get(topic, 0)
        if expected == 0 or sum(1 for t, _ in covered if t == topic) < expected:
            return 0  # a partition has not been heard from yet
    return min(position for _, position in covered.values())


def serving_index(checkpoints: CheckpointReader, alias: str) -> str | None:
    """The physical index behind ``alias`` (None before the first build).

    Raises:
        ServiceUnavailable: the store cannot answer.
    """
    return checkpoints.serving(alias)


def applied_position(
    checkpoints: CheckpointReader,
    names: IndexNames,
    projection: str,
    *,
    index: str | None = None,
    searchable: bool = False,
) -> int:
    """The position up to which ``projection`` has applied everything (0 if unknown).

    Judged for ``index``, or by default for the index behind the
    projection's alias; with ``searchable``, how far it is searchable.

    Raises:
        ServiceUnavailable: the store cannot answer.
    """
    if index is None:
        index = checkpoints.serving(names.alias(projection))
        if index is None:
            return 0
    return covered_position(checkpoints.applied(projection, index), searchable=searchable)


class _Pauses:
    """The pauses between looks: short at first, then longer, never past the deadline."""

    def __init__(self, timeout: float):
        self.deadline = time.monotonic() + timeout
        self.pause = _FIRST_PAUSE

    def next(self) -> float | None:
        """Seconds to pause before the next look; None once the deadline passed."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        pause, self.pause = min(self.pause, remaining), min(self.pause * 2, _LONGEST_PAUSE)
        return pause


def wait_for_position(
    checkpoints: CheckpointReader,
    names: IndexNames,
    projection: str,
    position: int,
    *,
    timeout: float,
) -> Reached:
    """Wait, blocking, until the index in service has ``position`` searchable.

    The :class:`Reached` index is the physical one behind the alias that
    has it: a caller that reads that index, not the alias, gets an answer
    with the write in it even if a swap happens meanwhile.

    Raises:
        ServiceUnavailable: the store cannot answer.
    """
    alias = names.alias(projection)
    pauses = _Pauses(timeout)
    while True:
        reached = 0
        index = checkpoints.serving(alias)
        if index:
            hits = checkpoints.applied(projection, index)
            reached = covered_position(hits, searchable=True)
            if reached >= position:
                return Reached(index, reached)
        pause = pauses.next()
        if pause is None:
            return Reached(None, reached)
        time.sleep(pause)  # polling a remote condition, with backoff


class AsyncPositionWatch:
    """One look at a read model's checkpoints for every awaited wait on it.

    However many queries wait for positions of one read model, one task
    polls its alias and checkpoints (while any wait), and wakes each wait
    whose position became searchable: the store's load grows with the
    number of read models waited on, not with the number of waits.
    """

    def __init__(self, checkpoints: AsyncCheckpointReader, names: IndexNames, projection: str):
        self.checkpoints = checkpoints
        self.alias = names.alias(projection)
        self.projection = projection
        #: What the last look saw.
        self.last = Reached(None, 0)
        self._waits: list[tuple[int, asyncio.Future[Reached]]] = []
        self._poller: asyncio.Task[None] | None = None
        self._pause = _FIRST_PAUSE

    @property
    def waiting(self) -> int:
        """How many waits are pending."""
        return len(self._waits)

    async def wait(self, position: int, timeout: float) -> Reached:
        """Wait until ``position`` is searchable in the index in service, or ``timeout``.

        Raises:
            ServiceUnavailable: the store cannot answer.
        """
        polling = self._poller is not None and not self._poller.done()
        if polling and self.last.index and self.last.searchable >= position:
            return self.last  # the watch's latest look, at most a pause old, has it
        future: asyncio.Future[Reached] = asyncio.get_running_loop().create_future()
        entry = (position, future)
        self._waits.append(entry)
        self._pause = _FIRST_PAUSE  # a new wait: look soon
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return Reached(None, self.last.searchable)
        finally:
            self._waits.remove(entry)

    async def _poll(self) -> None:
        while self._waits:
            try:
                index = await self.checkpoints.serving(self.alias)
                reached = 0
                if index:
                    hits = await self.checkpoints.applied(self.projection, index)
                    reached = covered_position(hits, searchable=True)
            except Exception as exc:  # every wait gets the store's error
                for _, future in self._waits:
                    if not future.done():
                        future.set_exception(exc)
                return
            self.last = Reached(index, reached)
            for position, future in self._waits:
                if index and reached >= position and not future.done():
                    future.set_result(self.last)
            await asyncio.sleep(self._pause)  # polling a remote condition, with backoff
            self._pause = min(self._pause * 2, _LONGEST_PAUSE)
