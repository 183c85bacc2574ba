"""Checkpoints: how far each partition has been applied to one physical index.

The one record both sides share. Workers, rebuilds and rollbacks write
:class:`Checkpoint` records (through a ``CheckpointStore``); the query side
and the status read them back (through a ``CheckpointReader``) and judge
them with :func:`coverage`. No driver is imported here.

Checkpoints belong to a physical index, not to the projection (decision
0011): each says, for one partition and one index, the run of offsets
applied there without a gap and the position up to which that partition
holds nothing the index lacks. Two writers record them:

- ``rebuild``: a rebuild or a rollback that filled the index; its run
  starts at offset 0 (the replay and the catch-up leave no gap);
- ``worker``: the live worker, from the first offset it wrote to this index.

A worker's run counts only where it joins the fill (it starts at or below
the fill's offset), or when nothing ever filled the index (version 1, built
by the workers alone).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from cqrskit.topology import checkpoint_id

__all__ = ["FILL_WRITER", "WORKER_WRITER", "Checkpoint", "Coverage", "coverage"]

#: Checkpoints of a rebuild or rollback that filled an index from offset 0.
FILL_WRITER = "rebuild"
#: Checkpoints of the live worker, from the first offset it wrote to the index.
WORKER_WRITER = "worker"

#: (offset, position) per (topic, partition): below the offset every message
#: is applied, and every event of the partition up to the position.
Coverage = dict[tuple[str, int], tuple[int, int]]


@dataclass(frozen=True)
class Checkpoint:
    """How far one partition of a projection's topics has been applied to one index.

    A checkpoint belongs to a physical index (decision 0011): it claims that
    every message of the partition from ``from_offset`` up to ``offset`` took
    effect in ``index``. The query side joins a worker's run to the run of
    the rebuild or rollback that filled the index (see :func:`coverage`).
    """

    projection: str
    topic: str
    partition: int
    offset: int
    #: Every event of this partition up to this position has been applied
    #: (the last event applied, or the relay's watermark if that is higher).
    position: int
    #: How many partitions the topic has (0 until a watermark said).
    partitions: int = 0
    #: Every topic the projection reads.
    topics: tuple[str, ...] = ()
    #: The physical index the effects are in.
    index: str = ""
    #: ``worker`` (the live worker) or ``rebuild`` (a rebuild or rollback filling the index).
    writer: str = WORKER_WRITER
    #: The first offset of the run; a rebuild's run starts at 0.
    from_offset: int = 0
    #: Every effect of this partition up to this position was searchable
    #: (refreshed) when the checkpoint was written; None when not recorded
    #: (checkpoints of older versions, whose writers never refreshed), taken
    #: as nothing known searchable.
    searchable: int | None = None

    @property
    def doc_id(self) -> str:
        """The checkpoint's id: one per index, partition and writer."""
        return checkpoint_id(self.index, self.topic, self.partition, self.writer)


def coverage(checkpoints: Iterable[Checkpoint], *, searchable: bool = False) -> Coverage:
    """What one index holds without a gap, per partition, from its checkpoints.

    ``checkpoints`` are the checkpoints of one index. With ``searchable``,
    each position is how far the partition's effects are searchable, not
    only applied; a checkpoint of an older version, which records no
    searchable position, shows nothing searchable: its writer wrote it right
    after its writes and left the refresh to the reader. Pure; the rule
    every reader of checkpoints uses (queries, status, rollback).
    """
    if searchable:
        checkpoints = [replace(c, position=c.searchable or 0) for c in checkpoints]
    fills: dict[tuple[str, int], Checkpoint] = {}
    runs: dict[tuple[str, int], Checkpoint] = {}
    for checkpoint in checkpoints:
        key = (checkpoint.topic, checkpoint.partition)
        (fills if checkpoint.writer == FILL_WRITER else runs)[key] = checkpoint
    covered: Coverage = {}
    for key in fills.keys() | runs.keys():
        fill, run = fills.get(key), runs.get(key)
        if fill is None:
            covered[key] = (runs[key].offset, runs[key].position)
            continue
        offset, position = fill.offset, fill.position
        if run is not None and run.from_offset <= offset:
            offset = max(offset, run.offset)
            position = max(position, run.position)
        covered[key] = (offset, position)
    return covered
