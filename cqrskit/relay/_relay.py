"""The outbox relay: PostgreSQL's events, in commit order, to Kafka, nothing lost.

One loop, three duties:

1. lead or stand by: the relay that holds the advisory lock and a live
   lease publishes; the others try again every second, take over when it
   dies, and end its session when its lease has expired (it is paused or
   cut off); a leader that cannot renew its lease in time gives up;
2. publish: read pages of the outbox after the recorded position and
   produce them in a Kafka transaction, up to ``relay_pages_in_flight``
   pages per transaction;
3. record: once the transaction is committed (every message acknowledged,
   acks=all), record the last position it covers.

A crash therefore re-sends at most one transaction's pages (at-least-once);
consumers make the effect exactly-once by guarding on the event's position.
A leader replaced while silent can neither record (its session is gone) nor
publish (the new leader's producer fenced its transactional id); see
docs/decisions/0008-relay-lease-and-fencing.md.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass

from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential

from cqrskit.envelope import (
    HEADER_EVENT_TYPE,
    HEADER_LAYOUT,
    HEADER_POSITION,
    HEADER_SEAL,
    HEADER_TRACEPARENT,
    Seal,
    encode,
    event_type_of,
    message_size,
)
from cqrskit.errors import (
    CqrskitError,
    DeliveryFailed,
    KafkaTrouble,
    LeaseLost,
    MessageTooLarge,
    TransientError,
)
from cqrskit.observability import _metrics as metrics
from cqrskit.observability import instance_name
from cqrskit.relay._layout import TopicLayout
from cqrskit.relay._ports import Outbox, OutboxRow, Publisher, Publishers, TopicLayouts
from cqrskit.settings import Settings
from cqrskit.topology import LAYOUT_TABLE, Topology

__all__ = ["OutboxRelay", "RelayOptions"]

log = logging.getLogger("cqrskit.relay")

#: What varies between two retries of one failure: counts, positions, times.
_NUMBERS = re.compile(r"\d+")


def _root_cause(error: BaseException | None) -> str:
    """The innermost of cqrskit's errors that ``error`` was raised from, as text.

    A commit that failed (DeliveryFailed) and the fencing after it
    (KafkaTrouble) fail for one cause: the broker's words under both.
    """
    while isinstance(error, CqrskitError) and isinstance(error.__cause__, CqrskitError):
        error = error.__cause__
    return str(error)


#: Seconds one wait for Kafka (fencing, a commit) may last before the
#: leader renews its lease and waits again.
_KAFKA_WAIT = 1.0


@dataclass(frozen=True)
class RelayOptions:
    """The relay's timings and sizes: the part of :class:`~cqrskit.settings.Settings` it reads."""

    #: Outbox rows read per query (``relay_page_size``).
    page_size: int
    #: Pages produced before the oldest must be acknowledged (``relay_pages_in_flight``).
    pages_in_flight: int
    #: Seconds a leader may go without renewing its lease (``relay_lease``).
    lease: float
    #: Seconds to wait for acknowledgements when stopping (``relay_drain_timeout``).
    drain_timeout: float
    #: Seconds between attempts at a message refused as too large.
    refused_retry_interval: float
    #: The key messages are sealed with (``relay_seal_key``); None: the built-in key.
    seal_key: SecretStr | None = None

    @classmethod
    def of(cls, settings: Settings) -> RelayOptions:
        """The relay's options as ``settings`` give them."""
        return cls(
            page_size=settings.relay_page_size,
            pages_in_flight=settings.relay_pages_in_flight,
            lease=settings.relay_lease,
            drain_timeout=settings.relay_drain_timeout,
            refused_retry_interval=settings.relay_refused_retry_interval,
            seal_key=settings.relay_seal_key,
        )


@dataclass
class _Page:
    """One page of the outbox produced in the open transaction."""

    last: int
    size: int
    sent_at: float


class OutboxRelay:
    """Publishes one application's outbox to Kafka; run several for high availability.

    :meth:`run` blocks until :meth:`stop` is called (for example from a
    SIGTERM handler); it then waits for the broker to acknowledge what is in
    flight (up to ``relay_drain_timeout``), records the position, and returns.

    ``outbox`` is the store's side (leadership, reading, recording) and
    ``publishers`` makes the broker's side, a new publisher for each session
    it leads; :meth:`cqrskit.runtime.Runtime.relay` builds both.
    ``topology`` names the application's topics and transactional id.
    """

    def __init__(
        self,
        topology: Topology,
        relay_name: str = "default",
        *,
        outbox: Outbox,
        publishers: Publishers,
        options: RelayOptions,
    ):
        self.options = options
        application_name = self.application_name = topology.application
        self.instance = instance_name()
        self.outbox = outbox
        self._publishers = publishers
        self.topology = topology
        self.transactional_id = self.topology.transactional_id(relay_name)
        #: monotonic time the last renewal of the lease was sent at.
        self._renewed_at = float("-inf")
        self._stopping = threading.Event()
        self._state = ""
        #: The cause of the failures since the relay last published, as last said.
        self._trouble: str | None = None
        #: aggregate type -> (topic, its pinned layout), filled per session.
        self._topics: dict[str, tuple[str, TopicLayout]] = {}
        self._layouts: TopicLayouts | None = None
        self._warned: set[tuple[str, int]] = set()
        self._state_metric = metrics.relay_state.labels(application_name)
        self._state_metric.state("starting")
        self._published = metrics.relay_published.labels(application_name)
        self._page_events = metrics.relay_page_events.labels(application_name)
        self._ack_seconds = metrics.relay_kafka_ack_seconds.labels(application_name)
        self._type_headers: dict[str, tuple[str, bytes]] = {}
        self._seal = Seal(options.seal_key, application_name)
        #: The last position this relay recorded as acknowledged.
        self.position: int | None = None
        #: The last position handed to the producer.
        self._produced_up_to = 0
        #: The position of the event the broker refuses as too large, until past it.
        self._refused: int | None = None

    # -- life cycle --------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to drain, record and return. Safe from a signal handler."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping.is_set()

    def run(self) -> None:
        """Lead or stand by, publish, and survive outages until stopped.

        Raises:
            PermanentError: something retrying cannot fix (a missing events
                table, a topic the broker refuses to create).
        """
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            wait=self._backoff,
            sleep=self._sleep,
            before_sleep=lambda state: self._failed(
                state.outcome.exception() if state.outcome else None
            ),
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._session()
                if self.stopping:
                    break
        finally:
            self.outbox.close()
            self._set_state("stopped", f"relay {self.instance} stopped")

    _exponential = wait_random_exponential(multiplier=0.5, max=30)

    def _backoff(self, state: RetryCallState) -> float:
        # A refused message is refused again until an operator raises the
        # topic's limit: try it slowly, not with a backoff that resets.
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, MessageTooLarge):
            return self.options.refused_retry_interval
        return float(self._exponential(state))

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _failed(self, error: BaseException | None) -> None:
        text = f"{type(error).__name__}: {error}" if error else "unknown error"
        metrics.relay_errors.labels(self.application_name, type(error).__name__).inc()
        if isinstance(error, MessageTooLarge):
            # One ERROR line per refused event, however often it is retried.
            self._refused = error.position
            self._set_state(f"message-refused:{error.position}", text, logging.ERROR)
        else:
            self._set_state("failing", "")
            self._troubled(_root_cause(error), f"relay error, backing off: {text}")
        try:
            self.outbox.connect()
            self.outbox.record_error(text)
        except Exception:  # best effort: the outage may be PostgreSQL's own
            pass
        finally:
            self.outbox.close()

    def _set_state(self, state: str, message: str, level: int = logging.INFO) -> None:
        if state == "leading" and self._refused is not None:
            return  # still refused: leading again once past it (see _recovered)
        if state != self._state:
            self._state = state
            if state == "standby":
                self._trouble = None  # the store answers: standing by is the news
            if message and not (self._trouble and state == "leading"):
                log.log(level, message, extra={"instance": self.instance})
            self._state_metric.state(state.partition(":")[0])

    def _troubled(self, cause: str, message: str) -> None:
        """A failure: one WARNING per change of its cause, however often it is retried.

        Counts and positions in ``cause`` do not make it a new one. Between
        two retries the relay leads again without saying so; once it
        publishes again, :meth:`_recovered` says that once.
        """
        key = _NUMBERS.sub("N", cause)
        if key != self._trouble:
            self._trouble = key
            log.warning(message, extra={"instance": self.instance})

    def _recovered(self) -> None:
        """A transaction was committed: say once that the relay publishes again, if it
        had failed, or had stopped at a refused event it is now past."""
        if self._refused is not None or (self._trouble is None and self._state == "leading"):
            return
        self._trouble = None
        self._state = "leading"
        self._state_metric.state("leading")
        log.info("relay %s is publishing again", self.instance, extra={"instance": self.instance})

    # -- one session: connect, lead, publish -------------------------------------

    def _session(self) -> None:
        try:
            self.outbox.connect()
            while not self.stopping:
                renewing_at = time.monotonic()
                if self.outbox.try_lead(self.instance):
                    self._renewed_at = renewing_at
                    break
                self._set_state("standby", f"relay {self.instance} is standing by")
                ended = self.outbox.end_silent_leader(self.options.lease)
                if ended is not None:
                    log.warning(
                        "the leader's lease expired (silent for over %.0f s): ended its "
                        "session (backend %d) to take over",
                        self.options.lease,
                        ended,
                        extra={"instance": self.instance},
                    )
                    continue
                self._stopping.wait(1.0)
            if self.stopping:
                return
            self._set_state("leading", f"relay {self.instance} is leading")
            publisher = self._publishers(self.transactional_id, self._kafka_unreachable, self._seal)
            try:
                self._publish(publisher)
            except (DeliveryFailed, KafkaTrouble) as exc:
                # Start over from the recorded position with a new producer.
                publisher.abandon(self.options.lease / 2)
                if publisher.fenced:
                    raise LeaseLost(
                        f"relay {self.instance} was fenced by a newer producer of "
                        f"{self.transactional_id!r}: another relay leads"
                    ) from exc
                refused = self._too_large(publisher, exc)
                if refused is not None:
                    raise refused from exc
                raise
            except BaseException:
                publisher.abandon(self.options.lease / 2)
                raise
        # The outbox raises its session's loss as LostSession and a missing
        # events table as PermanentError (see cqrskit.relay._ports).
        finally:
            self.outbox.close()

    def _kafka_unreachable(self, reason: str) -> None:
        self._set_state("kafka-unreachable", "")
        self._troubled(f"Kafka: {reason}", f"Kafka unreachable, holding messages: {reason}")

    # -- the lease -----------------------------------------------------------------

    def _check_lease(self) -> None:
        """Give up leading once the lease may have expired: a standby may lead now."""
        silent = time.monotonic() - self._renewed_at
        if silent > self.options.lease:
            log.warning(
                "relay %s lost its lease: not renewed for %.1f s (relay_lease %.0f s); "
                "it stops publishing and stands by",
                self.instance,
                silent,
                self.options.lease,
                extra={"instance": self.instance},
            )
            raise LeaseLost(f"relay {self.instance} lost its lease after {silent:.1f} s")

    def _renew(self, position: int | None = None) -> None:
        """Renew the lease, recording ``position`` with it if given.

        Raises:
            LeaseLost: the lease expired, or the row names another leader.
        """
        self._check_lease()
        renewing_at = time.monotonic()
        renewed = self.outbox.heartbeat() if position is None else self.outbox.record(position)
        if not renewed:
            log.warning(
                "relay %s lost its lease: another relay leads",
                self.instance,
                extra={"instance": self.instance},
            )
            raise LeaseLost(f"relay {self.instance} lost its lease: another relay leads")
        self._renewed_at = renewing_at

    def _fence(self, publisher: Publisher) -> None:
        """Fence every older producer of our transactional id, renewing the lease meanwhile."""
        while not publisher.fence(_KAFKA_WAIT):
            self._renew()
            if self.stopping:
                return

    # -- publishing -------------------------------------------------------------

    def _publish(self, publisher: Publisher) -> None:
        options = self.options
        # Fence first, then read the position: after fencing nothing of an
        # old leader can still land in Kafka, and since we hold the lock
        # nothing of it can be recorded any more.
        self._fence(publisher)
        after = self.outbox.position()
        self.position = after
        pages: list[_Page] = []
        window = options.pages_in_flight
        topology = self.topology
        self._layouts = self.outbox.layouts()
        self._topics = {}  # layouts are read again on the leader's session
        boundaries = self._boundaries(topology.topic_start, after)
        marked, marked_at = -1, float("-inf")
        measured_at = moves_at = float("-inf")
        while not self.stopping:
            self._check_lease()
            rows: list[OutboxRow] = []
            if len(pages) < window:
                rows, after, marked = self._read(publisher, topology, after, boundaries, marked)
                if rows:
                    self._produced_up_to = rows[-1][0]
                    pages.append(self._send(publisher, rows))
                    after = rows[-1][0]
            now = time.monotonic()
            if (after > marked and (not rows or now - marked_at > 0.05)) or now - marked_at > 1.0:
                publisher.publish_watermark(topology, after)
                marked, marked_at = after, now
            publisher.poll(0)
            # Large transactions: a full window of pages, or all there is; or
            # what is in hand when the lease falls due, since recording it
            # renews the lease anyway (and a renewal that waits on a locked
            # row then waits with the pages already committed to Kafka).
            renewal_due = time.monotonic() - self._renewed_at > 1.0
            if publisher.in_transaction and (not rows or len(pages) >= window or renewal_due):
                self._commit(publisher, pages)
            if time.monotonic() - self._renewed_at > 1.0:
                self._renew()
            if now - measured_at > 1.0:
                self._measure_lag()
                self._warn_unused_partitions(publisher)
                measured_at = now
            if not rows and not pages and now - moves_at > 1.0:
                # Caught up: every stored event up to ``after`` is committed
                # to Kafka, by us or by a leader before us, so a move recorded
                # here changes the partition of no event already sent.
                moves_at = now
                if self._adopt_moves(after):
                    boundaries = sorted({*boundaries, after})
            if not rows and not pages:
                self.outbox.wait_for_events(0.5)
        self._drain(publisher, pages)

    def _commit(
        self, publisher: Publisher, pages: list[_Page], give_up_at: float | None = None
    ) -> bool:
        """Commit the open transaction, then record its last position; False if given up.

        While the broker is slow or away, the lease is renewed between waits,
        so a standby does not take over a leader that is only waiting.
        """
        try:
            while not publisher.commit(_KAFKA_WAIT):
                self._renew()
                if give_up_at is not None and time.monotonic() > give_up_at:
                    return False
        except KafkaTrouble as exc:
            if publisher.fenced:
                raise  # another relay leads: _session says so
            covered = f"positions {self.position} to {pages[-1].last}" if pages else "watermarks"
            raise DeliveryFailed(f"transaction of {covered} not committed: {exc}") from exc
        if pages:
            self._renew(pages[-1].last)
            committed_at = time.monotonic()
            for page in pages:
                self._published.inc(page.size)
                self._ack_seconds.observe(committed_at - page.sent_at)
            self.position = pages[-1].last
            if self._refused is not None and self.position >= self._refused:
                self._refused = None
            pages.clear()
        self._recovered()
        return True

    def _boundaries(self, start: str, after: int) -> list[int]:
        """Positions at or after ``after`` where a topic moved to more partitions."""
        assert self._layouts is not None
        return sorted(
            {
                boundary
                for layout in self._layouts.load_all(start).values()
                for boundary, _ in layout.steps[1:]
                if boundary >= after
            }
        )

    def _read(
        self,
        publisher: Publisher,
        topology: Topology,
        after: int,
        boundaries: list[int],
        marked: int,
    ) -> tuple[list[OutboxRow], int, int]:
        """(page, after, marked): the next page after ``after``, cut at the next boundary.

        At a boundary, every event up to it is queued: it is marked on every
        partition before any event of the new layout, so that workers can
        tell when the old layout is complete up to it.
        """
        while True:
            rows = list(self.outbox.read(after, self.options.page_size))
            if not (boundaries and rows and rows[-1][0] > boundaries[0]):
                return rows, after, marked
            rows = [row for row in rows if row[0] <= boundaries[0]]
            if rows:
                return rows, after, marked
            if marked < boundaries[0]:
                publisher.publish_watermark(topology, boundaries[0], wait=True)
                marked = boundaries[0]
            after = boundaries.pop(0)

    def _adopt_moves(self, after: int) -> bool:
        """Record requested moves onto more partitions at ``after``; True if any."""
        assert self._layouts is not None
        moves = self._layouts.pending_moves()
        for topic, partitions in moves.items():
            layout = self._layouts.adopt(topic, after, partitions)
            for aggregate_type, (known, _) in list(self._topics.items()):
                if known == topic:
                    self._topics[aggregate_type] = (topic, layout)
            log.info(
                "topic %s moves onto %d partitions for the events after position %d; "
                "workers apply them once every old partition is complete up to it",
                topic,
                partitions,
                after,
                extra={"topic": topic, "partitions": partitions, "boundary": after},
            )
        return bool(moves)

    def _send(self, publisher: Publisher, rows: list[OutboxRow]) -> _Page:
        # The hot loop: one pass per published event, so no call or
        # allocation that can be hoisted out of it stays in it.
        publisher.begin()
        page = _Page(last=rows[-1][0], size=len(rows), sent_at=time.monotonic())
        self._page_events.observe(len(rows))
        produce = publisher.produce
        topics = self._topics
        type_headers = self._type_headers
        seal = self._seal.event
        for position, aggregate_id, version, event_topic, state in rows:
            value, event_type, aggregate_type, traceparent = encode(
                position=position,
                aggregate_id=aggregate_id,
                aggregate_version=version,
                topic=event_topic,
                state=state,
            )
            topic, layout = topics.get(aggregate_type) or self._topic(publisher, aggregate_type)
            type_header = type_headers.get(event_type)
            if type_header is None:
                type_header = type_headers[event_type] = (HEADER_EVENT_TYPE, event_type.encode())
            key = aggregate_id.encode()
            headers: list[tuple[str, str | bytes | None]] = [
                type_header,
                (HEADER_POSITION, b"%d" % position),
                (HEADER_SEAL, seal(topic, key, type_header[1], position, value)),
            ]
            if traceparent:
                headers.append((HEADER_TRACEPARENT, traceparent.encode()))
            barrier = layout.barrier(position)
            if barrier is not None:
                headers.append((HEADER_LAYOUT, barrier))
            # The partition comes from the pinned layout, never from the
            # cluster's current count: a re-send repeats the first send.
            produce(topic, key, value, headers, partition=layout.partition(key, position))
        return page

    def _too_large(self, publisher: Publisher, failure: Exception) -> MessageTooLarge | None:
        """The refusal as too large behind ``failure``, naming its event; None if it is not one.

        A refusal fails a whole batch and says nothing of which message in
        it was too large: the largest message not yet acknowledged is the
        one to name. It often arrives only as the fatal error it caused
        ("Local: Fatal error"), so the largest message is also held against
        its topic's ``max.message.bytes``.
        """
        unacknowledged = self.options.pages_in_flight * self.options.page_size
        rows = [
            row
            for row in self.outbox.read(self.position or 0, unacknowledged)
            if row[0] <= self._produced_up_to
        ]
        if not rows:
            return None
        sizes = [
            message_size(aggregate_id=a, aggregate_version=v, topic=t, state=state)
            for _, a, v, t, state in rows
        ]
        size, (position, aggregate_id, _, event_topic, _) = max(zip(sizes, rows, strict=True))
        event_type, aggregate_type = event_type_of(event_topic)
        topic = self.topology.topic(aggregate_type)
        if publisher.refused_as_too_large(failure) or size > publisher.max_message_bytes(
            topic, default=size
        ):
            return MessageTooLarge(position, aggregate_id, event_type, size, topic)
        return None

    def _topic(self, publisher: Publisher, aggregate_type: str) -> tuple[str, TopicLayout]:
        assert self._layouts is not None
        topic = self.topology.topic(aggregate_type)
        publisher.ensure_topic(topic)
        layout = self._layouts.pin(topic, publisher.partition_count(topic))
        self._topics[aggregate_type] = (topic, layout)
        return topic, layout

    def _warn_unused_partitions(self, publisher: Publisher) -> None:
        """Say once per topic and count that Kafka has partitions the relay sends no events to."""
        in_kafka = publisher.known_partitions()
        for topic, layout in self._topics.values():
            count = in_kafka.get(topic, 0)
            if count > layout.partitions and (topic, count) not in self._warned:
                self._warned.add((topic, count))
                log.warning(
                    "topic %s has %d partitions; the relay sends events to the first %d, "
                    "pinned in %s so that no event changes partition (the other %d get "
                    "watermarks only); 'cqrskit relay repartition' moves it onto all of them",
                    topic,
                    count,
                    layout.partitions,
                    LAYOUT_TABLE,
                    count - layout.partitions,
                    extra={"topic": topic, "partitions": count, "used": layout.partitions},
                )

    def _measure_lag(self) -> None:
        _head, events, seconds = self.outbox.lag(self.position or 0)
        metrics.relay_lag_events.labels(self.application_name).set(events)
        metrics.relay_lag_seconds.labels(self.application_name).set(seconds)

    def _drain(self, publisher: Publisher, pages: list[_Page]) -> None:
        deadline = time.monotonic() + self.options.drain_timeout
        if not self._commit(publisher, pages, give_up_at=deadline):
            log.warning(
                "stopping with %d pages not committed; the next relay sends them again",
                len(pages),
            )
            publisher.abandon(self.options.lease / 2)
