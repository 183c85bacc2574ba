"""How far a read model's index has applied the store: read-your-writes, from checkpoints only.

Checkpoints belong to a physical index, not to the projection (decision
0011; see :mod:`cqrskit.checkpoints` for the record and the rule that
judges it). The index has applied every event up to position P when every
partition of every topic it reads is covered up to P. The query side reads
those checkpoints through a :class:`CheckpointReader` (the read models'
store); it never asks PostgreSQL or Kafka.
"""

from __future__ import annotations

import time

from cqrskit.checkpoints import FILL_WRITER, WORKER_WRITER, Coverage, coverage
from cqrskit.queries._ports import CheckpointReader
from cqrskit.topology import IndexNames

__all__ = [
    "FILL_WRITER",
    "WORKER_WRITER",
    "Coverage",
    "applied_position",
    "coverage",
    "serving_index",
    "wait_for_position",
]


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
) -> int:
    """The position up to which ``projection`` has applied everything (0 if unknown).

    Judged for ``index``, or by default for the index behind the
    projection's alias.

    Raises:
        ServiceUnavailable: the store cannot answer.
    """
    if index is None:
        index = checkpoints.serving(names.alias(projection))
        if index is None:
            return 0
    hits = checkpoints.applied(projection, index)
    if not hits:
        return 0
    topics = set(hits[0].topics)
    counts: dict[str, int] = {}
    for hit in hits:
        counts[hit.topic] = max(counts.get(hit.topic, 0), hit.partitions)
    covered = coverage(hits)
    for topic in topics or counts:
        expected = counts.get(topic, 0)
        if expected == 0 or sum(1 for t, _ in covered if t == topic) < expected:
            return 0  # a partition has not been heard from yet
    return min(position for _, position in covered.values())


def wait_for_position(
    checkpoints: CheckpointReader,
    names: IndexNames,
    projection: str,
    position: int,
    *,
    timeout: float,
) -> str | None:
    """Wait until the index in service has applied ``position``; return that index.

    Returns the physical index behind the projection's alias that has
    applied ``position``: a caller that reads that
    index, not the alias, gets an answer with the write in it even if a swap
    happens meanwhile. None if ``timeout`` passed first.

    Raises:
        ServiceUnavailable: the store cannot answer.
    """
    alias = names.alias(projection)
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        index = checkpoints.serving(alias)
        if index and applied_position(checkpoints, names, projection, index=index) >= position:
            return index
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(pause, remaining))  # polling a remote condition, with backoff
        pause = min(pause * 2, 0.1)
