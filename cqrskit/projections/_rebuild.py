"""Rebuilding a read model without downtime, rolling it back, and proving it.

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

import copy
import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from elasticsearch import ApiError
from pydantic import BaseModel

from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.elasticsearch.read_model import ElasticsearchReadModel, read_model_for
from cqrskit.checkpoints import FILL_WRITER, Checkpoint, coverage
from cqrskit.envelope import HEADER_EVENT_TYPE, Envelope
from cqrskit.errors import PermanentError, PositionBeyondHead
from cqrskit.eventstore import read_envelopes, store_head
from cqrskit.projections._applier import Applier, Failure
from cqrskit.projections._memory import MemoryReadModel
from cqrskit.projections._ports import DocState
from cqrskit.projections._projection import Projection
from cqrskit.projections._worker import _position_of, topics_for
from cqrskit.settings import Settings
from cqrskit.topology import IndexNames, Topology, parse_partition_key, partition_key

__all__ = [
    "Drift",
    "Progress",
    "RebuildPlan",
    "RebuildResult",
    "VerifyReport",
    "prune",
    "prune_plan",
    "rebuild",
    "rebuild_plan",
    "rollback",
    "rollback_plan",
    "verify",
]

log = logging.getLogger("cqrskit.projections")

#: Called as progress(phase, done, total) while a rebuild runs.
Progress = Callable[[str, int, int], None]

#: Young-generation allocations between collections, and how many of each
#: generation's collections set off the next one's (the defaults: 700, 10, 10).
_REBUILD_GC_THRESHOLDS = (50_000, 20, 100)

_STATE_MAPPING = {"dynamic": False, "properties": {"projection": {"type": "keyword"}}}


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


class _Rebuilder:
    def __init__(
        self,
        settings: Settings,
        application_name: str,
        projection: Projection[Any],
        progress: Progress,
    ):
        self.settings = settings
        self.application_name = application_name
        self.projection = projection
        self.progress = progress
        self.read_model: ElasticsearchReadModel = read_model_for(settings, projection)
        self.applier = Applier(projection, self.read_model, settings.projection_retries)
        self.state_index = IndexNames.of(settings).rebuilds_index
        self.topics = topics_for(settings, application_name, type(projection))
        topology = Topology.of(settings, application_name)
        self.group = topology.projection_group(projection.name)
        self.rebuild_group = topology.rebuild_group(projection.name)
        self.wanted = {t.encode() for t in projection.event_types()}
        self.batch_size = settings.rebuild_batch_size

    # -- state -------------------------------------------------------------------

    def load_state(self) -> _State | None:
        es = self.read_model.es
        try:
            if not es.indices.exists(index=self.state_index):
                es.indices.create(
                    index=self.state_index,
                    mappings=_STATE_MAPPING,
                    settings={"number_of_shards": 1, "number_of_replicas": 0},
                )
        except ApiError as exc:
            if "resource_already_exists" not in str(exc):
                raise
        return self.read_state()

    def read_state(self) -> _State | None:
        """The recorded progress, read without creating anything."""
        found = self.read_model.es.options(ignore_status=404).get(
            index=self.state_index, id=self.projection.name
        )
        if not found.get("found"):
            return None
        fields = {k: v for k, v in found["_source"].items() if k != "updated_at"}
        for name in _PARTITION_MAPS:
            # Progress kept before partition keys had one form resumes as well.
            fields[name] = {
                partition_key(*parse_partition_key(k)): v for k, v in fields.get(name, {}).items()
            }
        return _State(**fields)

    def save_state(self, state: _State) -> None:
        body = {**asdict(state), "updated_at": datetime.now(UTC).isoformat()}
        self.read_model.es.index(index=self.state_index, id=self.projection.name, document=body)

    # -- Kafka -------------------------------------------------------------------

    def _consumer(self, group: str) -> Consumer:
        return Consumer(
            {
                **kafka_backend.consumer_config(self.settings),
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )

    def partitions(self) -> list[TopicPartition]:
        admin = kafka_backend.admin(self.settings)
        for topic in self.topics:
            kafka_backend.create_topic(admin, self.settings, topic)
        consumer = self._consumer(self.group)
        try:
            with kafka_backend.translated(self.settings.kafka_bootstrap, "reading partitions"):
                metadata = consumer.list_topics(timeout=self.settings.connect_timeout)
            return [
                TopicPartition(topic, p)
                for topic in self.topics
                for p in sorted(metadata.topics[topic].partitions)
            ]
        finally:
            consumer.close()

    def live_offsets(self) -> dict[str, int]:
        """The live group's committed offsets (the start of each partition if none)."""
        consumer = self._consumer(self.group)
        try:
            partitions = self.partitions()
            with kafka_backend.translated(self.settings.kafka_bootstrap, "reading offsets"):
                committed = consumer.committed(partitions, timeout=self.settings.connect_timeout)
            return {_key(tp): tp.offset if tp.offset >= 0 else OFFSET_BEGINNING for tp in committed}
        finally:
            consumer.close()

    def end_offsets(self) -> dict[str, int]:
        consumer = self._consumer(self.rebuild_group)
        try:
            ends = {}
            for tp in self.partitions():
                with kafka_backend.translated(self.settings.kafka_bootstrap, "reading offsets"):
                    _, high = consumer.get_watermark_offsets(
                        tp, timeout=self.settings.connect_timeout
                    )
                ends[_key(tp)] = high
            return ends
        finally:
            consumer.close()

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
        ends = self.end_offsets()
        position = dict(start)
        todo = {k for k, end in ends.items() if _resolve(position.get(k, OFFSET_BEGINNING)) < end}
        applied = 0
        if not todo:
            return {k: max(_resolve(position.get(k, 0)), ends[k]) for k in ends}, 0
        consumer = self._consumer(self.rebuild_group)
        try:
            consumer.assign([_partition(k, position.get(k, OFFSET_BEGINNING)) for k in todo])
            total = sum(ends[k] - max(0, _resolve(position.get(k, 0))) for k in todo)
            self.progress(phase, 0, total)  # the phase starts now: rates count from here
            while todo:
                messages = consumer.consume(self.batch_size, timeout=1.0)
                if not messages:
                    # Nothing came: ask where the consumer is (an end offset
                    # may lie past the last message, e.g. after a marker).
                    for tp in consumer.position([_partition(k, 0) for k in todo]):
                        if tp.offset >= ends[_key(tp)]:
                            todo.discard(_key(tp))
                    continue
                envelopes, streams = [], []
                for message in messages:
                    if message.error() is not None:
                        continue
                    key = partition_key(str(message.topic()), int(message.partition() or 0))
                    position[key] = int(message.offset() or 0) + 1
                    if position[key] >= ends[key]:
                        todo.discard(key)
                    envelope = self._envelope(message, key, seen, floor)
                    if envelope is not None:
                        envelopes.append(envelope)
                        streams.append(
                            partition_key(str(message.topic()), int(message.partition() or 0))
                        )
                self._apply(envelopes, index, streams)
                applied += len(messages)
                self.progress(phase, applied, total)
        finally:
            consumer.close()
        return {k: max(_resolve(position.get(k, 0)), ends[k]) for k in ends}, applied

    def _envelope(
        self, message: Message, key: str, seen: dict[str, int], floor: int
    ) -> Envelope | None:
        """The event to apply from ``message``, if the projection wants it and the
        replay did not apply it; ``seen`` gains the position of every message."""
        headers = kafka_backend.headers_of(message)
        said = _position_of(headers)
        if said is not None:
            seen[key] = max(seen.get(key, 0), said)
        if headers.get(HEADER_EVENT_TYPE, b"") not in self.wanted:
            return None
        if said is not None and said <= floor:
            return None  # the replay applied it: not worth decoding
        envelope = Envelope.decode(message.value() or b"")
        return envelope if envelope.position > floor else None  # the replay covered the rest

    def fill(self, index: str, offsets: dict[str, int], seen: dict[str, int], head: int) -> None:
        """Checkpoint ``index`` as filled without a gap from offset 0 up to ``offsets``.

        Every event up to ``head`` (replayed from the store) and every
        message below ``offsets`` is in the index once this is called.
        """
        counts: dict[str, int] = {}
        parsed = {key: parse_partition_key(key) for key in offsets}
        for topic, _ in parsed.values():
            counts[topic] = counts.get(topic, 0) + 1
        self.read_model.save_checkpoints(
            Checkpoint(
                projection=self.projection.name,
                topic=parsed[key][0],
                partition=parsed[key][1],
                offset=offset,
                position=max(head, seen.get(key, 0)),
                partitions=counts[parsed[key][0]],
                topics=tuple(self.topics),
                index=index,
                writer=FILL_WRITER,
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
        for envelope in read_envelopes(
            self.settings, self.application_name, after=after, upto=state.head
        ):
            last = envelope.position
            read += 1
            if envelope.event_type in wanted:
                batch.append(envelope)
            if len(batch) >= self.batch_size:
                flush(last)
        flush(last if last > after else state.head)
        self.progress(phase, read, read)
        return done


def _key(tp: TopicPartition) -> str:
    return partition_key(tp.topic, tp.partition)


def _partition(key: str, offset: int) -> TopicPartition:
    topic, partition = parse_partition_key(key)
    return TopicPartition(topic, partition, offset)


def _resolve(offset: int) -> int:
    return 0 if offset < 0 else offset


def rebuild(
    settings: Settings,
    application_name: str,
    projection: Projection[Any],
    *,
    from_position: int = 0,
    drop_old: bool = False,
    progress: Progress = _no_progress,
) -> RebuildResult:
    """Build the read model afresh into a new index and put it in service.

    ``from_position`` > 0 builds it from the events after that position only
    (``cqrskit projections reset --to-position``). Queries keep being served
    by the old index until the one atomic alias swap. Safe to interrupt and
    run again: it resumes.

    Raises:
        ServiceUnavailable: a service went away; run it again to resume.
    """
    with _fewer_collections():
        return _rebuild(
            settings,
            application_name,
            projection,
            from_position=from_position,
            drop_old=drop_old,
            progress=progress,
        )


def _check_floor(settings: Settings, application_name: str, from_position: int) -> int:
    """The store's head; refuses a position past it (a reset there keeps no event)."""
    head = store_head(settings, application_name)
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
    application_name: str,
    projection: Projection[Any],
    *,
    from_position: int = 0,
) -> RebuildPlan:
    """What ``rebuild(..., from_position=...)`` would do; read-only.

    Raises:
        PositionBeyondHead: ``from_position`` is past the store's head.
        ServiceUnavailable: a service cannot answer.
    """
    head = _check_floor(settings, application_name, from_position)
    rebuilder = _Rebuilder(settings, application_name, projection, _no_progress)
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


def _rebuild(
    settings: Settings,
    application_name: str,
    projection: Projection[Any],
    *,
    from_position: int,
    drop_old: bool,
    progress: Progress,
) -> RebuildResult:
    _check_floor(settings, application_name, from_position)
    rebuilder = _Rebuilder(settings, application_name, projection, progress)
    read_model = rebuilder.read_model
    read_model.ensure()
    state = rebuilder.load_state()
    resumed = state is not None and state.phase != "done"
    if state is None or state.phase == "done":
        target = read_model.next_version()
        read_model.create_index(target, alias=False)
        state = _State(
            projection=projection.name,
            target=target,
            from_position=from_position,
            start_offsets=rebuilder.live_offsets(),
            head=store_head(settings, application_name),
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


def rollback(
    settings: Settings,
    application_name: str,
    projection: Projection[Any],
    *,
    progress: Progress = _no_progress,
) -> str:
    """Serve the previous index again, caught up from Kafka first; return its name.

    The previous index is caught up from its own checkpoints (what it holds
    without a gap), checkpointed as filled, swapped in, and caught up again
    for what the live worker wrote to the other index meanwhile. Run again
    after an interruption, it goes on from the previous index's checkpoints.

    Raises:
        PermanentError: there is no previous index to go back to.
        ServiceUnavailable: a service went away; run it again.
    """
    rebuilder = _Rebuilder(settings, application_name, projection, progress)
    _, previous = rollback_plan(settings, application_name, projection)
    state = rebuilder.load_state()
    assert state is not None  # rollback_plan found it
    read_model = rebuilder.read_model
    covered = coverage(read_model.checkpoints(previous))
    start = {partition_key(t, p): offset for (t, p), (offset, _) in covered.items()}
    seen = {partition_key(t, p): position for (t, p), (_, position) in covered.items()}
    reached, _ = rebuilder.catch_up(previous, start, "catching up the old index", seen=seen)
    rebuilder.fill(previous, reached, seen, 0)
    read_model.swap(previous)
    reached, _ = rebuilder.catch_up(previous, reached, "catching up after the swap", seen=seen)
    rebuilder.fill(previous, reached, seen, 0)
    state.target, state.previous = previous, state.target
    state.swap_offsets = reached
    rebuilder.save_state(state)
    return state.target


def rollback_plan(
    settings: Settings, application_name: str, projection: Projection[Any]
) -> tuple[str | None, str]:
    """(the index in service, the one :func:`rollback` would serve again); read-only.

    Raises:
        PermanentError: there is no previous index to go back to.
    """
    rebuilder = _Rebuilder(settings, application_name, projection, _no_progress)
    state = rebuilder.read_state()
    if state is None or state.phase != "done" or not state.previous:
        raise PermanentError(f"{projection.name} has no finished rebuild to roll back")
    if state.previous not in rebuilder.read_model.versions():
        raise PermanentError(f"the previous index {state.previous} was deleted")
    return rebuilder.read_model.serving(), state.previous


def prune_plan(settings: Settings, projection: Projection[Any]) -> list[str]:
    """The indices :func:`prune` would delete (every version not in service); read-only."""
    read_model = read_model_for(settings, projection)
    serving = read_model.serving()
    return [v for v in read_model.versions() if v != serving]


def prune(settings: Settings, projection: Projection[Any]) -> list[str]:
    """Delete every version of the read model except the one in service; return them.

    Idempotent. Raises ServiceUnavailable when Elasticsearch cannot answer.
    """
    read_model = read_model_for(settings, projection)
    dropped = prune_plan(settings, projection)
    for index in dropped:
        read_model.delete_index(index)
    return dropped


@dataclass(frozen=True)
class Drift:
    """One document that differs between the live read model and a fresh fold.

    ``kind`` is ``missing`` (the fold has it, the read model not), ``extra``
    (the other way round), ``different`` (``fields`` name what differs) or
    ``unexplained``: the document records a position at which no event of
    the store changed it (written by something other than the projection).
    """

    doc_id: str
    kind: str  # missing | extra | different | unexplained
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of comparing the live read model with a fresh fold of the store.

    ``newer`` counts the documents the live worker changed after ``head``;
    each was compared with a fold up to its own recorded position.
    """

    projection: str
    head: int
    compared: int
    newer: int
    drift: tuple[Drift, ...]

    @property
    def ok(self) -> bool:
        """True when nothing drifted."""
        return not self.drift


_VERIFY_BATCH = 2000


def verify(settings: Settings, application_name: str, projection: Projection[Any]) -> VerifyReport:
    """Fold the event store afresh and compare every document with the live one.

    Reads the store's head H first and folds up to it. A live document that
    records a position above H (the live worker changed it while this ran)
    is compared with the fold continued up to that position; one whose
    position no event of the store has, or whose event did not change it,
    is reported ``unexplained``. Read-only and repeatable.

    Raises:
        ServiceUnavailable: PostgreSQL or Elasticsearch cannot answer.
    """
    head = store_head(settings, application_name)
    fresh = MemoryReadModel()
    applier = Applier(projection, fresh, retries=1)
    batch: list[Envelope] = []
    for envelope in read_envelopes(settings, application_name, upto=head):
        batch.append(envelope)
        if len(batch) >= _VERIFY_BATCH:
            applier.apply(batch)
            batch = []
    applier.apply(batch)
    read_model = read_model_for(settings, projection)
    read_model.refresh()  # the scan sees every write acknowledged before it
    live = {doc.doc_id: doc for doc in read_model.scan()}
    newer = sorted((d for d in live.values() if d.position > head), key=lambda d: d.position)
    expected: dict[str, DocState | None] = {
        doc_id: fresh.docs.get(doc_id) for doc_id in fresh.docs.keys() | live.keys()
    }
    stored: set[int] = set()
    if newer:
        later = read_envelopes(settings, application_name, after=head, upto=newer[-1].position)
        expected.update(_fold_to_each(applier, fresh, later, newer, stored))
    drift: list[Drift] = []
    for doc_id in sorted(expected):
        want, got = expected[doc_id], live.get(doc_id)
        if got is not None and got.position > head and not _explained(want, got, stored):
            drift.append(Drift(doc_id, "unexplained", ("position",)))
        else:
            drift += _compare(doc_id, want, got)
    return VerifyReport(projection.name, head, len(expected), len(newer), tuple(drift))


def _fold_to_each(
    applier: Applier,
    fresh: MemoryReadModel,
    envelopes: Iterator[Envelope],
    newer: list[DocState],
    stored: set[int],
) -> dict[str, DocState | None]:
    """Fold on past the head; each newer document's fresh state at its own position.

    ``newer`` is sorted by position; ``stored`` gains every position read.
    """
    expected: dict[str, DocState | None] = {}
    waiting = iter(newer)
    due = next(waiting, None)
    pending: list[Envelope] = []
    for envelope in envelopes:
        if due is not None and envelope.position > due.position:
            applier.apply(pending)
            pending = []
            while due is not None and due.position < envelope.position:
                expected[due.doc_id] = copy.deepcopy(fresh.docs.get(due.doc_id))
                due = next(waiting, None)
        pending.append(envelope)
        stored.add(envelope.position)
    applier.apply(pending)
    while due is not None:
        expected[due.doc_id] = copy.deepcopy(fresh.docs.get(due.doc_id))
        due = next(waiting, None)
    return expected


def _explained(expected: DocState | None, actual: DocState, stored: set[int]) -> bool:
    """True if an event of the store at the document's position changed it."""
    return (
        actual.position in stored and expected is not None and expected.position == actual.position
    )


def _compare(doc_id: str, expected: DocState | None, actual: DocState | None) -> Iterator[Drift]:
    exists = _live_view(expected)
    there = _live_view(actual)
    if exists is not None and there is None:
        yield Drift(doc_id, "missing")
    elif exists is None and there is not None:
        yield Drift(doc_id, "extra")
    elif exists is not None and there is not None:
        want, got = exists.model_dump(mode="json"), there.model_dump(mode="json")
        fields = tuple(sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k)))
        if fields:
            yield Drift(doc_id, "different", fields)


def _live_view(doc: DocState | None) -> BaseModel | None:
    if doc is None or doc.deleted:
        return None
    return doc.view
