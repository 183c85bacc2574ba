"""The checkpoints a live worker writes: per physical index, the run of offsets it applied there.

A worker resolves the index behind the alias for each batch and writes the
whole batch there; its checkpoint for that index extends the run of offsets
it (or another worker of the group) applied to that index without a gap.
After a swap the run starts again at the swap's first batch, and the query
side counts it only once a rebuild's or rollback's fill joins it (decision
0011).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from cqrskit.checkpoints import WORKER_WRITER, Checkpoint
from cqrskit.projections._ports import ReadModel
from cqrskit.topology import checkpoint_id

__all__ = ["Span", "WorkerCheckpoints"]


@dataclass(frozen=True)
class Span:
    """What one batch consumed of one partition: offsets ``start`` up to ``offset``."""

    topic: str
    partition: int
    start: int
    #: The offset after the batch's last message of this partition.
    offset: int
    #: The highest position among the batch's messages there (events and watermarks).
    position: int


def _joins(run: Checkpoint | None, span: Span) -> bool:
    return run is not None and span.start <= run.offset and span.offset >= run.from_offset


class WorkerCheckpoints:
    """Turns the spans of applied batches into checkpoints of the index written.

    Remembers the runs it recorded; for a partition and index it has no
    joining run for (a new assignment, a restart, an index just swapped in)
    it reads the stored checkpoint once, since another worker may have
    extended it. Every checkpoint it returns is true of its index: its
    effects are durable there before it is asked.
    """

    def __init__(self, read_model: ReadModel, topics: Sequence[str]):
        self.read_model = read_model
        self.topics = tuple(topics)
        self._runs: dict[str, Checkpoint] = {}

    def record(
        self, index: str, spans: Sequence[Span], partitions: Mapping[str, int]
    ) -> list[Checkpoint]:
        """The checkpoints of ``index`` once ``spans`` are applied there.

        Raises:
            ServiceUnavailable: a stored checkpoint could not be read.
        """
        ids = [checkpoint_id(index, s.topic, s.partition, WORKER_WRITER) for s in spans]
        unknown = [i for i, s in zip(ids, spans, strict=True) if not _joins(self._runs.get(i), s)]
        stored = {c.doc_id: c for c in self.read_model.stored_checkpoints(unknown)}
        recorded: list[Checkpoint] = []
        for doc_id, span in zip(ids, spans, strict=True):
            run = self._runs.get(doc_id)
            if not _joins(run, span):
                run = stored.get(doc_id)
            count = partitions.get(span.topic, 0)
            if run is not None and _joins(run, span):
                run = replace(
                    run,
                    from_offset=min(run.from_offset, span.start),
                    offset=max(run.offset, span.offset),
                    position=max(run.position, span.position),
                    partitions=max(run.partitions, count),
                    topics=self.topics,
                )
            else:  # a gap before this batch: a new run starts here
                run = Checkpoint(
                    projection=self.read_model.name,
                    topic=span.topic,
                    partition=span.partition,
                    offset=span.offset,
                    position=span.position,
                    partitions=count,
                    topics=self.topics,
                    index=index,
                    writer=WORKER_WRITER,
                    from_offset=span.start,
                )
            self._runs[doc_id] = run
            recorded.append(run)
        return recorded
