"""The checkpoints a live worker writes: per physical index, the run of offsets it applied there.

A worker resolves the index behind the alias for each batch and writes the
whole batch there; its checkpoint for that index extends the run of offsets
it (or another worker of the group) applied to that index without a gap.
After a swap the run starts again at the swap's first batch, and the query
side counts it only once a rebuild's or rollback's fill joins it (decision
0011).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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

    It also knows which partitions have effects in an index that no refresh
    has made searchable yet, and records each checkpoint's ``searchable``
    position accordingly (decision 0020): a partition with nothing waiting
    for a refresh is searchable as far as it is applied.
    """

    def __init__(self, read_model: ReadModel, topics: Sequence[str]):
        self.read_model = read_model
        self.topics = tuple(topics)
        self._runs: dict[str, Checkpoint] = {}
        #: (index, topic, partition) with applied effects no refresh has covered
        #: yet -> the lowest position among them.
        self._unrefreshed: dict[tuple[str, str, int], int] = {}

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions no longer assigned: their runs are another worker's to extend now."""
        gone = set(partitions)
        self._runs = {
            i: run for i, run in self._runs.items() if (run.topic, run.partition) not in gone
        }
        self._unrefreshed = {
            u: low for u, low in self._unrefreshed.items() if (u[1], u[2]) not in gone
        }

    def forget_index(self, index: str) -> None:
        """``index`` was deleted: none of its runs is written again, none waits for a refresh."""
        self._runs = {i: run for i, run in self._runs.items() if run.index != index}
        self._unrefreshed = {u: low for u, low in self._unrefreshed.items() if u[0] != index}

    def unrefreshed(self) -> set[str]:
        """The indices whose checkpoints do not yet say searchable as far as applied.

        Those holding effects of this worker that no refresh covered, and
        those with a run whose searchable position lags (a run taken over
        from another worker, say): a refresh brings both up to date.
        """
        lagging = {run.index for run in self._runs.values() if _lags(run)}
        return lagging | {index for index, _, _ in self._unrefreshed}

    def record(
        self,
        index: str,
        spans: Sequence[Span],
        partitions: Mapping[str, int],
        *,
        written: Mapping[tuple[str, int], int] | None = None,
        refreshed: bool | Callable[[], bool] = False,
    ) -> list[Checkpoint]:
        """The checkpoints of ``index`` once ``spans`` are applied there.

        ``written`` are the partitions whose events of these spans wrote to
        the index, each with the lowest position it wrote; ``refreshed`` says
        the index was refreshed after they were applied. As a function, it
        refreshes the index if due and says whether it did; it is called
        after the stored runs are read, since a refresh covers only the
        writes made before it: a run another member extended after our
        refresh (one replaced but still working) holds writes the refresh
        did not make searchable. After a refresh, every run of the index whose searchable position
        lags is returned too, brought up to date.

        Raises:
            ServiceUnavailable: a stored checkpoint could not be read, or
                the refresh failed.
        """
        for (topic, partition), low in (written or {}).items():
            key = (index, topic, partition)
            self._unrefreshed[key] = min(low, self._unrefreshed.get(key, low))
        ids = [checkpoint_id(index, s.topic, s.partition, WORKER_WRITER) for s in spans]
        unknown = [i for i, s in zip(ids, spans, strict=True) if not _joins(self._runs.get(i), s)]
        stored = {c.doc_id: c for c in self.read_model.stored_checkpoints(unknown)}
        if callable(refreshed):
            refreshed = refreshed()
        if refreshed:
            self._unrefreshed = {u: low for u, low in self._unrefreshed.items() if u[0] != index}
        recorded: list[Checkpoint] = []
        for doc_id, span in zip(ids, spans, strict=True):
            run = ours = self._runs.get(doc_id)
            if not _joins(run, span):
                run, ours = stored.get(doc_id), None
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
                    searchable=0,
                )
            run = self._searchable(run, ours, refreshed)
            self._runs[doc_id] = run
            recorded.append(run)
        if refreshed:
            done = set(ids)
            for doc_id, run in list(self._runs.items()):
                if doc_id not in done and run.index == index and _lags(run):
                    self._runs[doc_id] = replace(run, searchable=run.position)
                    recorded.append(self._runs[doc_id])
        return recorded

    def _searchable(self, run: Checkpoint, ours: Checkpoint | None, refreshed: bool) -> Checkpoint:
        """``run`` with how far it is searchable.

        As far as it is applied after a refresh of ours; or when its partition
        has nothing unrefreshed and our own run was searchable as far as it
        was applied (a watermark moved it on, say). Otherwise no further than
        it was (a run taken from the store may hold another worker's writes
        that no refresh has covered), and below the lowest position this
        worker wrote there since its last refresh: a batch that extends a run
        backwards (resumed from an offset before the run's first) writes
        effects below the position the run had searchable.
        """
        if refreshed:
            return replace(run, searchable=run.position)
        low = self._unrefreshed.get((run.index, run.topic, run.partition))
        if low is None and ours is not None and ours.searchable == ours.position:
            return replace(run, searchable=run.position)
        searchable = min(run.searchable or 0, run.position)
        if low is not None:
            searchable = max(0, min(searchable, low - 1))
        return replace(run, searchable=searchable)


def _lags(run: Checkpoint) -> bool:
    return run.searchable is not None and run.searchable < run.position
