"""Rebuilding a read model without downtime.

A rebuild never touches the index that serves queries until the new one is
complete:

1. create the next version of the index (``<alias>-v<n+1>``) with the
   current mapping, and note the live consumer group's committed offsets;
2. replay the event store (PostgreSQL, the source of truth: Kafka's
   retention may have dropped old events) up to its head, in position
   order, with bulk writes;
3. catch up from Kafka, from the noted offsets to the current end of each
   partition, skipping (by their position header, before decoding) the
   events the replay applied; events applied twice would be no-ops anyway
   (the documents' guards);
4. note the offsets that catch-up reached, checkpoint the new index as
   filled up to them, then swap the alias in one atomic step;
5. catch up again from those offsets to the end of each partition as it is
   after the swap: anything the live workers wrote to the old index just
   before the swap was produced before it, so this covers it, and nothing
   below the noted offsets needs reading twice; then checkpoint the new
   index as filled up to there.

Checkpoints belong to a physical index (decision 0011): between the swap
and step 5, readers asking for a position the live worker wrote only to the
old index wait, rather than get an answer without it.

Progress is recorded after every batch; an interrupted rebuild leaves the
alias alone and resumes where it stopped when run again.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from cqrskit.checkpoints import FILL_WRITER, Checkpoint
from cqrskit.envelope import HEADER_EVENT_TYPE, Envelope
from cqrskit.errors import PositionBeyondHead
from cqrskit.projections._applier import Applier, Failure
from cqrskit.projections._ports import (
    BEGINNING,
    ReadModel,
    RebuildStateStore,
    StoredEvents,
    TopicOffsets,
)
from cqrskit.projections._projection import Projection
from cqrskit.projections._worker import _position_of
from cqrskit.settings import Settings
from cqrskit.subscription import Message
from cqrskit.topology import parse_partition_key, partition_key

__all__ = [
    "Progress",
    "RebuildPlan",
    "RebuildPorts",
    "RebuildRequest",
    "RebuildResult",
    "rebuild",
    "rebuild_plan",
]

log = logging.getLogger("cqrskit.projections")

#: Called as progress(phase, done, total) while a rebuild runs.
Progress = Callable[[str, int, int], None]

#: Young-generation allocations between collections, and how many of each
#: generation's collections set off the next one's (the defaults: 700, 10, 10).
_REBUILD_GC_THRESHOLDS = (50_000, 20, 100)


def _no_progress(_phase: str, _done: int, _total: int) -> None:
    return None


#: The fields of :class:`_State` keyed by partition (:func:`partition_key`).
_PARTITION_MAPS = ("start_offsets", "caught_up_offsets", "swap_offsets", "complete")


@dataclass
class _State:
    """A rebuild's progress, kept in Elasticsearch so that it can resume."""

    projection: str
    target: str
    phase: str = "replaying"  # replaying -> catching-up -> swapped -> done
    previous: str | None = None
    head: int = 0
    from_position: int = 0
    replayed: int = 0
    start_offsets: dict[str, int] = field(default_factory=dict)
    #: Where the catch-up before the swap stopped: everything below these
    #: offsets is in the new index, so the catch-up after the swap starts here.
    caught_up_offsets: dict[str, int] = field(default_factory=dict)
    swap_offsets: dict[str, int] = field(default_factory=dict)
    #: The highest position the catch-ups saw per partition (events and
    #: watermarks): with the replay's head, how far the new index is complete.
    complete: dict[str, int] = field(default_factory=dict)
    failures: int = 0


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild did."""

    projection: str
    index: str
    previous: str | None
    replayed: int
    caught_up: int
    failures: int
    resumed: bool


@dataclass(frozen=True)
class RebuildPorts:
    """What a rebuild, a rollback or a plan of either works on, for one projection.

    Built by :meth:`cqrskit.runtime.Runtime.rebuild_ports`.
    """

    read_model: ReadModel
    states: RebuildStateStore
    offsets: TopicOffsets
    events: StoredEvents
    #: Every topic the projection reads.
    topics: tuple[str, ...]


class _Rebuilder:
    def __init__(
        self,
        settings: Settings,
        projection: Projection[Any],
        ports: RebuildPorts,
        progress: Progress = _no_progress,
    ):
        self.settings = settings
        self.projection = projection
        self.progress = progress
        self.read_model = ports.read_model
        self.states = ports.states
        self.offsets = ports.offsets
        self.events = ports.events
        self.applier = Applier(projection, self.read_model, settings.projection_retries)
        self.topics = ports.topics
        self.wanted = {t.encode() for t in projection.event_types()}
        self.batch_size = settings.rebuild_batch_size

    # -- state -------------------------------------------------------------------

    def load_state(self) -> _State | None:
        self.states.ensure()
        return self.read_state()

    def read_state(self) -> _State | None:
        """The recorded progress, read without creating anything."""
        fields = self.states.read(self.projection.name)
        if fields is None:
            return None
        for name in _PARTITION_MAPS:
            # Progress kept before partition keys had one form resumes as well.
            fields[name] = {
                partition_key(*parse_partition_key(k)): v for k, v in fields.get(name, {}).items()
            }
        return _State(**fields)

    def save_state(self, state: _State) -> None:
        self.states.save(self.projection.name, asdict(state))

    # -- Kafka -------------------------------------------------------------------

    def catch_up(
        self,
        index: str,
        start: dict[str, int],
        phase: str,
        *,
        seen: dict[str, int],
        floor: int = 0,
    ) -> tuple[dict[str, int], int]:
        """Apply every message from ``start`` to the current end of each partition.

        Events at or below ``floor`` (a store position the replay reached) are
        skipped unread. ``seen`` gains the highest position read per
        partition. Returns the offsets reached (everything below them is
        applied) and how many messages were read.
        """
        ends = self.offsets.ends()
        position = dict(start)
        total = sum(max(0, end - max(0, position.get(k, BEGINNING))) for k, end in ends.items())
        applied = 0
        if total:
            self.progress(phase, 0, total)  # the phase starts now: rates count from here
        for messages in self.offsets.replay(position, ends, self.batch_size):
            envelopes, streams = [], []
            for message in messages:
                key = partition_key(message.topic, message.partition)
                position[key] = message.next_offset
                envelope = self._envelope(message, key, seen, floor)
                if envelope is not None:
                    envelopes.append(envelope)
                    streams.append(key)
            self._apply(envelopes, index, streams)
            applied += len(messages)
            self.progress(phase, applied, total)
        return {k: max(0, position.get(k, 0), ends[k]) for k in ends}, applied

    def _envelope(
        self, message: Message, key: str, seen: dict[str, int], floor: int
    ) -> Envelope | None:
        """The event to apply from ``message``, if the projection wants it and the
        replay did not apply it; ``seen`` gains the position of every message."""
        headers = message.headers
        said = _position_of(headers)
        if said is not None:
            seen[key] = max(seen.get(key, 0), said)
        if headers.get(HEADER_EVENT_TYPE, b"") not in self.wanted:
            return None
        if said is not None and said <= floor:
            return None  # the replay applied it: not worth decoding
        envelope = Envelope.decode(message.value)
        return envelope if envelope.position > floor else None  # the replay covered the rest

    def fill(self, index: str, offsets: dict[str, int], seen: dict[str, int], head: int) -> None:
        """Checkpoint ``index`` as filled without a gap from offset 0 up to ``offsets``.

        Every event up to ``head`` (replayed from the store) and every
        message below ``offsets`` is in the index once this is called. The
        index is refreshed first, so what the checkpoints claim is searchable
        as well, and they say so (``searchable`` is their position).
        """
        self.read_model.refresh(index)
        counts: dict[str, int] = {}
        parsed = {key: parse_partition_key(key) for key in offsets}
        for topic, _ in parsed.values():
            counts[topic] = counts.get(topic, 0) + 1
        positions = {key: max(head, seen.get(key, 0)) for key in offsets}
        self.read_model.save_checkpoints(
            Checkpoint(
                projection=self.projection.name,
                topic=parsed[key][0],
                partition=parsed[key][1],
                offset=offset,
                position=positions[key],
                partitions=counts[parsed[key][0]],
                topics=tuple(self.topics),
                index=index,
                writer=FILL_WRITER,
                searchable=positions[key],
            )
            for key, offset in offsets.items()
        )

    # -- applying ------------------------------------------------------------------

    def _apply(
        self, envelopes: list[Envelope], index: str, streams: list[str] | None = None
    ) -> list[Failure]:
        if not envelopes:
            return []
        failures = self.applier.apply(envelopes, index=index, streams=streams)
        for failure in failures:
            log.warning(
                "rebuild of %s: %s failed on %s at position %d: %s",
                self.projection.name,
                failure.handler,
                failure.envelope.event_type,
                failure.envelope.position,
                failure.error,
            )
        return failures

    def replay(self, state: _State) -> int:
        after = max(state.replayed, state.from_position)
        # Positions have gaps (failed appends), so this is an upper bound.
        total = max(0, state.head - after)
        done = read = 0
        batch: list[Envelope] = []
        wanted = set(self.projection.event_types())
        phase = "replaying the event store"
        self.progress(phase, 0, total)  # the phase starts now: rates count from here

        def flush(last: int) -> None:
            nonlocal batch, done
            state.failures += len(self._apply(batch, state.target))
            done += len(batch)
            batch = []
            state.replayed = last
            self.save_state(state)
            self.progress(phase, read, total)

        last = after
        for envelope in self.events.envelopes(after=after, upto=state.head):
            last = envelope.position
            read += 1
            if envelope.event_type in wanted:
                batch.append(envelope)
            if len(batch) >= self.batch_size:
                flush(last)
        flush(last if last > after else state.head)
        self.progress(phase, read, read)
        return done


@dataclass(frozen=True)
class RebuildRequest:
    """What a rebuild starts from, what it does after the swap, and whom it tells."""

    #: > 0: build from the events after this position only
    #: (``cqrskit projections reset --to-position``).
    from_position: int = 0
    #: Delete the index that served before, once the new one does.
    drop_old: bool = False
    #: Called as the phases go on (none: nobody is told).
    progress: Progress | None = None


def rebuild(
    settings: Settings,
    projection: Projection[Any],
    ports: RebuildPorts,
    request: RebuildRequest | None = None,
) -> RebuildResult:
    """Build the read model afresh into a new index and put it in service.

    Queries keep being served by the old index until the one atomic alias
    swap. Safe to interrupt and run again: it resumes.

    Raises:
        ServiceUnavailable: a service went away; run it again to resume.
    """
    asked = request or RebuildRequest()
    with _fewer_collections():
        return _rebuild(
            _Rebuilder(settings, projection, ports, asked.progress or _no_progress),
            from_position=asked.from_position,
            drop_old=asked.drop_old,
        )


def _check_floor(events: StoredEvents, from_position: int) -> int:
    """The store's head; refuses a position past it (a reset there keeps no event)."""
    head = events.head()
    if from_position > head:
        raise PositionBeyondHead(from_position, head, "reset position")
    return head


@dataclass(frozen=True)
class RebuildPlan:
    """What :func:`rebuild` would do now, found without changing anything."""

    projection: str
    #: The index it would build (or go on building, if ``resumes``).
    target: str
    #: The index in service now (None before the first build).
    serving: str | None
    head: int
    from_position: int
    #: An interrupted rebuild would be resumed (with its own from position).
    resumes: bool


def rebuild_plan(
    settings: Settings,
    projection: Projection[Any],
    ports: RebuildPorts,
    *,
    from_position: int = 0,
) -> RebuildPlan:
    """What ``rebuild(..., from_position=...)`` would do; read-only.

    Raises:
        PositionBeyondHead: ``from_position`` is past the store's head.
        ServiceUnavailable: a service cannot answer.
    """
    head = _check_floor(ports.events, from_position)
    rebuilder = _Rebuilder(settings, projection, ports)
    read_model = rebuilder.read_model
    state = rebuilder.read_state()
    if state is not None and state.phase != "done":
        return RebuildPlan(
            projection.name,
            state.target,
            read_model.serving(),
            state.head,
            state.from_position,
            resumes=True,
        )
    return RebuildPlan(
        projection.name,
        read_model.next_version(),
        read_model.serving(),
        head,
        from_position,
        resumes=False,
    )


def _rebuild(rebuilder: _Rebuilder, *, from_position: int, drop_old: bool) -> RebuildResult:
    projection = rebuilder.projection
    _check_floor(rebuilder.events, from_position)
    read_model = rebuilder.read_model
    read_model.ensure()
    state = rebuilder.load_state()
    resumed = state is not None and state.phase != "done"
    if state is None or state.phase == "done":
        target = read_model.next_version()
        read_model.create_index(target, alias=False, loading=True)
        state = _State(
            projection=projection.name,
            target=target,
            from_position=from_position,
            start_offsets=rebuilder.offsets.committed(),
            head=rebuilder.events.head(),
        )
        state.replayed = from_position
        rebuilder.save_state(state)
        log.info("rebuilding %s into %s up to position %d", projection.name, target, state.head)
    replayed = caught_up = 0
    if state.phase == "replaying":
        replayed = rebuilder.replay(state)
        state.phase = "catching-up"
        rebuilder.save_state(state)
    if state.phase == "catching-up":
        # Events up to the head are in the new index from the replay: skip them.
        reached, caught_up = rebuilder.catch_up(
            state.target,
            state.caught_up_offsets or state.start_offsets,
            "catching up from Kafka",
            seen=state.complete,
            floor=state.head,
        )
        serving = read_model.serving()
        if serving != state.target:  # else an interrupted run swapped already
            state.previous = serving
        state.caught_up_offsets = reached
        rebuilder.save_state(state)  # before the swap, so that a resumed run keeps both
        # Readers of the new index get only what it has: the live worker's
        # writes to the old index since the catch-up read its ends count
        # for the new one once the catch-up after the swap applied them.
        read_model.serve_settings(state.target)  # replicas and refresh, before it serves
        rebuilder.fill(state.target, reached, state.complete, state.head)
        read_model.swap(state.target)
        state.phase = "swapped"
        rebuilder.save_state(state)
        log.info("%s now serves from %s (was %s)", read_model.alias, state.target, state.previous)
    if state.phase == "swapped":
        # Everything below the offsets the first catch-up reached is applied.
        offsets, more = rebuilder.catch_up(
            state.target,
            state.caught_up_offsets or state.start_offsets,
            "catching up after the swap",
            seen=state.complete,
            floor=state.head,
        )
        rebuilder.fill(state.target, offsets, state.complete, state.head)
        caught_up += more
        state.swap_offsets = offsets
        state.phase = "done"
        rebuilder.save_state(state)
    if drop_old and state.previous:
        read_model.delete_index(state.previous)
    return RebuildResult(
        projection.name, state.target, state.previous, replayed, caught_up, state.failures, resumed
    )


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect garbage less often while a rebuild runs; restore the thresholds after.

    Why: each batch's objects (envelopes, the ``mget`` response, documents,
    views, bodies) outlive a few young collections, get promoted, and with
    the default thresholds set off a full collection every few batches; the
    collector took a quarter to a third of a rebuild's wall time. The
    objects of start-up (modules, clients) are frozen out of the collector's
    scans for the same time, unless the caller froze some already. The
    thresholds are the process's, so other threads collect less often too
    while a rebuild runs.
    """
    thresholds = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(*_REBUILD_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if freeze:
            gc.unfreeze()
