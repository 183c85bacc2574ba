"""The projection worker: messages in, bulk writes to the read model, offsets after effects.

One consumer group per projection, so several worker processes of one
projection share its partitions. The worker sees the group through a
:class:`~cqrskit.subscription.PausableSubscription` and the read model
through its ports; Kafka's and Elasticsearch's types stay in the adapters.
For each batch the worker decodes the envelopes (skipping, by header, event
types the projection does not handle), applies them (see :mod:`._applier`),
dead-letters what a handler could not apply, records checkpoints, and only
then commits the batch's offsets. A crash anywhere re-delivers the batch, and the
guards make the second delivery a no-op.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from pydantic import ValidationError
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    wait_random_exponential,
)

from cqrskit.envelope import (
    HEADER_EVENT_TYPE,
    HEADER_POSITION,
    HEADER_SEAL,
    WATERMARK_EVENT_TYPE,
    Envelope,
    Seal,
)
from cqrskit.errors import MappingOutdated, PermanentError, ServiceUnavailable, TransientError
from cqrskit.observability import instance_name
from cqrskit.projections._applier import Applier, Failure
from cqrskit.projections._barrier import LayoutBarrier
from cqrskit.projections._ports import (
    STORE_STREAM,
    DeadLetter,
    DeadLetters,
    ReadModel,
    WorkerStats,
)
from cqrskit.projections._progress import Span, WorkerCheckpoints
from cqrskit.projections._projection import Projection
from cqrskit.projections._telemetry import WorkerTelemetry
from cqrskit.settings import Settings
from cqrskit.subscription import Message, Partition, PausableSubscription
from cqrskit.topology import Topology, partition_key

__all__ = [
    "ProjectionWorker",
    "ReplayResult",
    "WorkerPorts",
    "replay_dead_letters",
    "topics_for",
]

log = logging.getLogger("cqrskit.projections")

_WATERMARK = WATERMARK_EVENT_TYPE.encode()


def topics_for(
    settings: Settings, application_name: str, projection: type[Projection[Any]]
) -> list[str]:
    """The topics carrying the events a projection handles."""
    return Topology.of(settings, application_name).topics(projection.aggregate_types())


_UNSEALED = (
    "not sealed by the relay: written by another producer, or the relay's "
    "CQRSKIT_RELAY_SEAL_KEY differs from this worker's; neither applied nor its position believed"
)


def _position_of(headers: Mapping[str, bytes]) -> int | None:
    raw = headers.get(HEADER_POSITION)
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


def _foreign(headers: Mapping[str, bytes]) -> str:
    if HEADER_EVENT_TYPE not in headers:
        return f"not a cqrskit message: no {HEADER_EVENT_TYPE!r} header"
    return f"not a cqrskit message: {HEADER_POSITION!r} header {headers.get(HEADER_POSITION)!r}"


def _partitions_of(watermark: Message) -> int:
    try:
        return int(orjson.loads(watermark.value or b"{}").get("partitions", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


@dataclass(frozen=True)
class WorkerPorts:
    """What a projection worker works with; :meth:`cqrskit.runtime.Runtime.worker` builds it."""

    read_model: ReadModel
    dead_letters: DeadLetters
    subscription: PausableSubscription
    stats: WorkerStats


class ProjectionWorker:
    """Keeps one projection's read model up to date from its topics until stopped."""

    def __init__(
        self,
        settings: Settings,
        application_name: str,
        projection: Projection[Any],
        ports: WorkerPorts,
    ):
        """Build one through :meth:`cqrskit.runtime.Runtime.worker`, which makes the adapters."""
        self.settings = settings
        self.projection = projection
        self.read_model = ports.read_model
        self.subscription = ports.subscription
        self.stats = ports.stats
        dead_letters = ports.dead_letters
        self.applier = Applier(projection, self.read_model, settings.projection_retries)
        self.barrier = LayoutBarrier(self.read_model)
        self.dead_letters = dead_letters
        self.topics = topics_for(settings, application_name, type(projection))
        self.group = Topology.of(settings, application_name).projection_group(projection.name)
        self.wanted = {t.encode() for t in projection.event_types()}
        self.seal = Seal(settings.relay_seal_key, application_name)
        #: Per partition of this assignment: the offset after the last message processed.
        self._next: dict[tuple[str, int], int] = {}
        #: Per partition of this assignment: the committed offset it resumed from.
        self._resumed: dict[tuple[str, int], int] = {}
        self._stopping = threading.Event()
        self._state = ""
        #: Events applied (or skipped as already applied) since start.
        self.processed = 0
        self._partitions: dict[str, int] = {}
        self._checkpoints = WorkerCheckpoints(self.read_model, self.topics)
        #: When the worker last refreshed an index (monotonic seconds).
        self._refreshed_at = 0.0
        self.telemetry: WorkerTelemetry | None = None

    def stop(self) -> None:
        """Finish the batch in hand, commit it, and return from :meth:`run`."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping.is_set()

    def _set_state(self, state: str, message: str, level: int = logging.INFO) -> None:
        if state != self._state:
            self._state = state
            log.log(
                level,
                "projection %s: %s",
                self.projection.name,
                message,
                extra={"projection": self.projection.name},
            )
            if self.telemetry is not None:
                self.telemetry.state(state)

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_random_exponential(multiplier=0.5, max=15),
            stop=lambda _state: self.stopping,
            sleep=self._sleep,
            before_sleep=self._before_retry,
        )

    def _before_retry(self, retry_state: RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if self.telemetry is not None:
            self.telemetry.error(error)
        self._set_state("failing", f"retrying after {error or 'an error'}", logging.WARNING)

    # -- the loop ------------------------------------------------------------------

    def run(self) -> None:
        """Consume, apply and commit until :meth:`stop`.

        Raises:
            MappingOutdated: the view has fields the index in service does
                not map (rebuild it first).
            PermanentError: the read model cannot be set up (e.g. a bad mapping).
        """
        self.telemetry = WorkerTelemetry(self.projection.name, self.stats, instance_name())
        try:
            self._run()
        finally:
            self.telemetry.close()

    def _run(self) -> None:
        assert self.telemetry is not None
        try:
            for attempt in self._retrying():
                with attempt:
                    self._prepare()
        except RetryError:
            return
        self._set_state("running", f"consuming {', '.join(self.topics)} as group {self.group}")
        subscription = self.subscription
        batch_size = self.settings.projection_batch_size
        try:
            while not self.stopping:
                self.barrier.resume_ready(subscription)
                # Wait for one message, then take what is already fetched:
                # a batch never waits to fill up, so latency stays low.
                messages = subscription.poll(batch_size, max(0.01, self._until_refresh()))
                self.telemetry.idle(subscription.lag, drained=not messages)
                if messages:
                    self._process(messages)
                else:
                    self._commit_skipped()
                    self._refresh_trailing()
        finally:
            subscription.close()
            self._set_state("stopped", "stopped")

    def _forget_assignment(self) -> None:
        """A stuck consumer was replaced: what it was assigned is decided anew."""
        held = {*self._next, *self._resumed}
        self.barrier.forget([Partition(topic, partition) for topic, partition in held])
        self._checkpoints.forget(held)
        self._next.clear()
        self._resumed.clear()

    def _assigned(self, _partitions: list[Partition]) -> dict[Partition, int]:
        return {}  # every partition resumes at the group's committed offset

    def _revoked(self, partitions: list[Partition]) -> None:
        self.barrier.forget(partitions)
        self._checkpoints.forget((p.topic, p.partition) for p in partitions)
        for p in partitions:
            self._next.pop((p.topic, p.partition), None)
            self._resumed.pop((p.topic, p.partition), None)

    def _prepare(self) -> None:
        self.read_model.ensure()
        unmapped = self.read_model.unmapped_fields()
        if unmapped:
            index = self.read_model.serving() or self.read_model.alias
            raise MappingOutdated(self.projection.name, index, unmapped)
        self.subscription.subscribe(self._assigned, self._revoked, self._forget_assignment)

    def _process(self, messages: Sequence[Message]) -> None:
        started_ns = time.time_ns()
        messages = self.barrier.admit(self.subscription, messages)
        envelopes: list[Envelope] = []
        published_at: list[float] = []
        streams: list[str] = []
        origin: dict[int, Message] = {}
        dead: list[tuple[Message, str, str]] = []
        #: (first offset, offset after the last, highest position) per partition.
        spans: dict[tuple[str, int], tuple[int, int, int]] = {}
        for message in messages:
            key = (message.topic, message.partition)
            offset = message.offset
            first, _, high = spans.get(key) or (self._start(key, offset), 0, 0)
            read, believed = self._read(message, key)
            spans[key] = (first, offset + 1, max(high, believed))
            if isinstance(read, str):
                dead.append((message, "decode", read))
                continue
            if read is None:
                continue
            envelope = read
            envelopes.append(envelope)
            published_at.append(message.timestamp)
            streams.append(partition_key(key[0], key[1]))
            origin[envelope.position] = message
        batch = [Span(t, p, *spans[(t, p)]) for t, p in sorted(spans)]
        dead_lettered = self._apply_durably(envelopes, streams, origin, dead, batch)
        if dead_lettered is None:
            return  # stopping mid-outage: not committed, so re-delivered later
        if self._state != "running":
            self._set_state("running", "applying again")
        for span in batch:
            self._next[(span.topic, span.partition)] = span.offset
        self._commit(batch)
        self.processed += len(envelopes)
        if self.telemetry is not None:
            self.telemetry.dead_lettered(dead_lettered)
            self.telemetry.batch(
                len(messages), envelopes, published_at, started_ns, self.read_model.last_written
            )

    def _read(self, message: Message, key: tuple[str, int]) -> tuple[Envelope | str | None, int]:
        """(the event to apply, why the message is dead-lettered, or None to skip it;
        the position it shows its partition complete up to, 0 if none).

        Completeness is believed only from messages the relay sealed; an
        unhandled type is checked by its seal alone, never decoded.
        """
        headers = message.headers
        event_type = headers.get(HEADER_EVENT_TYPE)
        position = _position_of(headers)
        if event_type is None or position is None:
            return _foreign(headers), 0  # not written by a cqrskit relay: kept, with why
        value = message.value
        sealed = self.seal.verifies(
            headers.get(HEADER_SEAL),
            topic=key[0],
            partition=key[1],
            key=message.key,
            event_type=event_type,
            position=position,
            value=value,
        )
        envelope: Envelope | None = None
        if event_type in self.wanted:
            try:
                envelope = Envelope.decode(value)
            except (ValidationError, ValueError) as exc:
                return f"not an event envelope: {exc}", 0
            if not sealed:
                return _UNSEALED, 0
        if not sealed:
            return None, 0  # not the relay's: skipped, and its position not believed
        # Every message of the relay, event or watermark, says that this
        # partition holds nothing unseen up to its position.
        if event_type == _WATERMARK:
            self._partitions[key[0]] = _partitions_of(message)
        return envelope, position

    def _apply_durably(
        self,
        envelopes: list[Envelope],
        streams: list[str],
        origin: dict[int, Message],
        dead: list[tuple[Message, str, str]],
        batch: list[Span],
    ) -> int | None:
        """Apply, dead-letter and checkpoint, retrying outages; None if stopped first.

        Every dead letter is written (its delivery report said so) before
        its event is marked failed on a document, and so before the
        checkpoint and the offset commit: a topic that refuses a letter
        holds the batch here, retried, until it takes it.

        The whole batch is read from and written to the one index behind the
        alias when the attempt starts, and checkpointed as that index's: a
        swap meanwhile cannot mix two indices' versions in one batch, or
        credit one index with another's writes.

        Returns how many events went to the dead-letter topic.
        """
        lettered: set[int] = set()  # positions whose letters Kafka wrote, in any attempt

        def dead_letter(failures: list[Failure]) -> None:
            new = [f for f in failures if f.envelope.position not in lettered]
            for failure in new:
                self.dead_letters.send(
                    origin[failure.envelope.position], failure.handler, failure.error
                )
            self.dead_letters.flush()
            lettered.update(f.envelope.position for f in new)

        dead_lettered = len(dead)
        try:
            for attempt in self._retrying():
                with attempt:
                    index = self.read_model.serving() or self.read_model.alias
                    for message, handler, error_text in dead:
                        self.dead_letters.send(message, handler, error_text)
                    self.dead_letters.flush()
                    dead = []
                    failures = self.applier.apply(
                        envelopes, streams=streams, index=index, dead_letter=dead_letter
                    )
                    written: dict[tuple[str, int], int] = {}  # the lowest position, per partition
                    for position, m in origin.items():
                        key = (m.topic, m.partition)
                        written[key] = min(position, written.get(key, position))
                    # The refresh comes after the stored runs are read (see record).
                    self.read_model.save_checkpoints(
                        self._checkpoints.record(
                            index,
                            batch,
                            self._partitions,
                            written=written,
                            refreshed=partial(self._refresh_if_due, index, bool(written)),
                        )
                    )
        except RetryError:
            return None
        return dead_lettered + len(failures)

    # -- searchable --------------------------------------------------------------

    def _refresh_if_due(self, index: str, wrote: bool) -> bool:
        """Refresh ``index`` if it holds unsearchable effects and ``freshness`` has passed.

        The worker refreshes at most once per ``freshness`` seconds per index,
        whatever the query rate (decision 0020); True if it refreshed now.
        """
        if not wrote and index not in self._checkpoints.unrefreshed():
            return False  # nothing in it waits to become searchable
        if time.monotonic() - self._refreshed_at < self.projection.freshness:
            return False
        self.read_model.refresh(index)
        self._refreshed_at = time.monotonic()
        return True

    def _until_refresh(self) -> float:
        """Seconds until a refresh is due (0.5 when nothing waits for one)."""
        if not self._checkpoints.unrefreshed():
            return 0.5
        wait = self._refreshed_at + self.projection.freshness - time.monotonic()
        return min(0.5, max(0.0, wait))

    def _refresh_trailing(self) -> None:
        """No new batch came: refresh what is still unsearchable once it is due."""
        for index in sorted(self._checkpoints.unrefreshed()):
            try:
                if self._refresh_if_due(index, wrote=False):
                    self.read_model.save_checkpoints(
                        self._checkpoints.record(index, [], self._partitions, refreshed=True)
                    )
            except TransientError as exc:
                log.debug("projection %s: refresh not done: %s", self.projection.name, exc)
            except PermanentError:
                if index in self.read_model.versions():
                    raise
                # Deleted (a rebuild's --drop-old, prune): nothing left to make searchable.
                self._checkpoints.forget_index(index)

    def _commit(self, batch: list[Span]) -> None:
        offsets = {Partition(s.topic, s.partition): s.offset for s in batch}
        if not offsets:
            return
        # Asynchronous: a synchronous commit that meets a rebalance after a
        # broker outage waits for the rebalance, which waits for this thread
        # to poll; it never returns. The effects are already durable and
        # guarded, so a commit that is lost only means a batch delivered again.
        try:
            self.subscription.commit(offsets)
        except ServiceUnavailable as exc:
            log.warning("projection %s: offsets not committed: %s", self.projection.name, exc)

    def _start(self, key: tuple[str, int], offset: int) -> int:
        """Where the run of offsets that a message at ``offset`` continues begins.

        Offsets between two messages that one assignment delivers in turn
        hold no message (a relay transaction's commit marker, an aborted
        message; decision 0008), so a batch's run starts where the last one
        ended. The first batch of an assignment starts at the committed
        offset the consumer resumed from. Checkpoint runs then join across
        markers (decision 0011).
        """
        known = self._next.get(key, self._resumed.get(key))
        if known is None:
            partition = Partition(*key)
            try:
                committed = self.subscription.committed([partition]).get(partition)
                known = committed if committed is not None else offset
            except ServiceUnavailable:
                known = offset
            self._resumed[key] = known
        return known if known <= offset else offset

    def _commit_skipped(self) -> None:
        """Commit, and checkpoint, past what the consumer skipped: transaction markers.

        Each relay transaction ends with a commit marker in every partition
        it wrote to (decision 0008). The marker is never returned, so the
        offset after our last message stops just before it, and the group
        would show a lag of one forever. When a poll returned nothing, every
        message before the consumer's position has been processed (or was
        no message), so the position may be committed, and the index's
        checkpoint run extended over it. A partition that delivered nothing
        since it was assigned counts from the offset it resumed from: a
        worker that takes over partitions whose last batch was committed just
        before its marker has nothing else to move them on.
        """
        try:
            starts: dict[tuple[str, int], int] = {}
            ahead: dict[tuple[str, int], int] = {}
            for p, offset in self.subscription.positions().items():
                key = (p.topic, p.partition)
                start = self._next.get(key)
                if start is None:
                    start = self._start(key, offset)
                if offset > start:
                    starts[key], ahead[key] = start, offset
            if not ahead:
                return
            index = self.read_model.serving() or self.read_model.alias
            spans = [Span(t, p, starts[(t, p)], offset, 0) for (t, p), offset in ahead.items()]
            self.read_model.save_checkpoints(
                self._checkpoints.record(index, spans, self._partitions)
            )
            self.subscription.commit({Partition(*key): offset for key, offset in ahead.items()})
        except TransientError as exc:
            log.debug("projection %s: skipped offsets not committed: %s", self.projection.name, exc)
            return
        self._next.update(ahead)


@dataclass(frozen=True)
class ReplayResult:
    """What ``dlq replay`` did: events applied now, and events that failed again."""

    replayed: int
    failed_again: int


def replay_dead_letters(
    projection: Projection[Any],
    read_model: ReadModel,
    topic: DeadLetters,
    *,
    retries: int,
) -> ReplayResult:
    """Apply a projection's dead letters again (after a fix); idempotent.

    Events that fail again go back to the dead-letter topic with the new
    reason; either way every replayed letter is marked done.

    Raises:
        ServiceUnavailable: Kafka or Elasticsearch is unreachable (nothing is marked).
    """
    read_model.ensure()
    applier = Applier(projection, read_model, retries)
    letters, end = topic.pending()
    if not letters:
        return ReplayResult(0, 0)
    envelopes: list[Envelope] = []
    streams: list[str] = []
    by_position: dict[int, DeadLetter] = {}
    failed_again = 0
    for letter in letters:
        try:
            envelope = Envelope.decode(letter.value)
        except ValidationError as exc:
            topic.resend(letter, "decode", f"not an event envelope: {exc}")
            failed_again += 1
            continue
        envelopes.append(envelope)
        headers = letter.headers
        if "dlq.topic" in headers and headers.get("dlq.partition", b"").isdigit():
            streams.append(
                partition_key(headers["dlq.topic"].decode(), headers["dlq.partition"].decode())
            )
        else:
            streams.append(STORE_STREAM)
        by_position[envelope.position] = letter
    failures = applier.apply(envelopes, streams=streams, replay=True)
    for failure in failures:
        topic.resend(by_position[failure.envelope.position], failure.handler, failure.error)
    topic.flush()
    topic.mark_replayed(end)
    failed_again += len(failures)
    return ReplayResult(len(letters) - failed_again, failed_again)
