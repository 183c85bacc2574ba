"""The outbox relay: PostgreSQL's events, in commit order, to Kafka, nothing lost.

One loop, three duties:

1. lead or stand by: the relay that holds the advisory lock publishes; the
   others try again every second and take over when it dies;
2. publish: read pages of the outbox after the recorded position and hand
   them to the producer, keeping up to ``relay_pages_in_flight`` pages
   unacknowledged at once;
3. record: when every message of the oldest pages is acknowledged by the
   broker (acks=all), record the last position of those pages.

The waits on PostgreSQL (reading the next page, a position's commit) happen
on a helper thread on the same session, while the loop encodes and produces.

A crash therefore re-sends at most the pages in flight and those whose
record was not yet committed (at-least-once); consumers make the effect
exactly-once by guarding on the event's version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg
from confluent_kafka import KafkaError, KafkaException, Message
from tenacity import Retrying, retry_if_exception_type, wait_random_exponential

from cqrskit.backends.kafka import describe_error
from cqrskit.envelope import (
    HEADER_EVENT_TYPE,
    HEADER_POSITION,
    HEADER_TRACEPARENT,
    encode_envelope,
    event_type_of,
)
from cqrskit.errors import PermanentError, TransientError
from cqrskit.observability import _metrics as metrics
from cqrskit.relay._outbox import OutboxRow, PostgresOutbox, instance_name
from cqrskit.relay._publisher import KafkaPublisher
from cqrskit.settings import Settings

__all__ = ["OutboxRelay", "topic_for"]

log = logging.getLogger("cqrskit.relay")


class DeliveryFailed(TransientError):
    """The broker refused or timed out a message; the relay starts over from its position."""


class KafkaTrouble(TransientError):
    """librdkafka raised mid-publish; the relay starts over from its position."""


class LostSession(TransientError):
    """The PostgreSQL session (and with it the leadership) was lost."""


#: Per event class topic: (Kafka topic, event type, aggregate type, event type header).
_Route = tuple[str, str, str, tuple[str, bytes]]


@dataclass
class _Page:
    """One page of the outbox in flight: acknowledged when outstanding is 0."""

    last: int
    outstanding: int
    size: int = 0
    sent_at: float = 0.0
    error: KafkaError | None = field(default=None)

    def ack(self, error: KafkaError | None, _message: Message) -> None:
        self.outstanding -= 1
        if error is not None and self.error is None:
            self.error = error


class _OutboxThread:
    """The leader's session, used from one helper thread so the relay's thread need not wait.

    Reading a page is about half waiting for PostgreSQL, and recording a
    position is mostly waiting for its commit to reach the disk. So a full
    page (more events follow) makes the next page be read at once, here,
    while the relay's thread encodes and produces this one; and a position
    is recorded here while the relay's thread goes on. It is still the
    leader's own session (a psycopg connection serialises its users): a
    relay that lost it can neither read nor record. One thread runs the
    work in the order it was asked for, so positions are recorded in order;
    each only after the broker acknowledged every event up to it, as before.
    """

    def __init__(self, outbox: PostgresOutbox, page_size: int) -> None:
        self._outbox = outbox
        self._page_size = page_size
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cqrskit-relay-pg")
        self._next: tuple[int, Future[Sequence[OutboxRow]]] | None = None
        self._records: deque[tuple[int, Future[None]]] = deque()

    def read(self, after: int) -> list[OutboxRow]:
        """Up to a page of events after ``after``, in commit order.

        Raises what :meth:`PostgresOutbox.read` raises.
        """
        pending, self._next = self._next, None
        if pending is not None and pending[0] == after:
            rows = list(pending[1].result())
        else:
            rows = list(self._outbox.read(after, self._page_size))
        if len(rows) == self._page_size:
            last = rows[-1][0]
            self._next = (last, self._pool.submit(self._outbox.read, last, self._page_size))
        return rows

    def record(self, position: int) -> None:
        """Record ``position`` after the work already asked for; see :meth:`recorded`."""
        self._records.append((position, self._pool.submit(self._outbox.record, position)))

    def recorded(self, wait: bool = False) -> int | None:
        """The last position recorded since the previous call, or None.

        With ``wait``, first waits for every record asked for.

        Raises:
            what :meth:`PostgresOutbox.record` raises, for the first record
            that failed (the ones after it are not reported).
        """
        done = None
        records = self._records
        while records and (wait or records[0][1].done()):
            position, future = records.popleft()
            future.result()
            done = position
        return done

    def close(self) -> None:
        """Let the records asked for run, drop a page read ahead, and end the thread.

        Errors of that work are dropped: a relay closes after its last
        :meth:`recorded`, or because something failed already.
        """
        if self._next is not None:
            self._next[1].cancel()
            self._next = None
        self._pool.shutdown(wait=True)
        self._records.clear()


def topic_for(settings: Settings, application_name: str, aggregate_type: str) -> str:
    """The topic an aggregate type's events go to, by ``settings.topic_layout``."""
    prefix = settings.topic_prefix or application_name.lower()
    if settings.topic_layout == "per-application":
        return f"{prefix}.events"
    return f"{prefix}.{aggregate_type.lower()}"


class OutboxRelay:
    """Publishes one application's outbox to Kafka; run several for high availability.

    :meth:`run` blocks until :meth:`stop` is called (for example from a
    SIGTERM handler); it then waits for the broker to acknowledge what is in
    flight (up to ``relay_drain_timeout``), records the position, and returns.
    """

    def __init__(self, settings: Settings, application_name: str, relay_name: str = "default"):
        self.settings = settings
        self.application_name = application_name
        self.instance = instance_name()
        self.outbox = PostgresOutbox(settings, application_name, relay_name)
        self._stopping = threading.Event()
        self._state = ""
        self._routes: dict[str, _Route] = {}
        self._state_metric = metrics.relay_state.labels(application_name)
        self._state_metric.state("starting")
        self._published = metrics.relay_published.labels(application_name)
        self._page_events = metrics.relay_page_events.labels(application_name)
        self._ack_seconds = metrics.relay_kafka_ack_seconds.labels(application_name)
        #: The last position this relay recorded as acknowledged.
        self.position: int | None = None

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
            wait=wait_random_exponential(multiplier=0.5, max=30),
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

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _failed(self, error: BaseException | None) -> None:
        text = f"{type(error).__name__}: {error}" if error else "unknown error"
        metrics.relay_errors.labels(self.application_name, type(error).__name__).inc()
        self._set_state(f"failing:{type(error).__name__}", f"relay error, backing off: {text}")
        try:
            self.outbox.connect()
            self.outbox.record_error(text)
        except Exception:  # best effort: the outage may be PostgreSQL's own
            pass
        finally:
            self.outbox.close()

    def _set_state(self, state: str, message: str, level: int = logging.INFO) -> None:
        if state != self._state:
            self._state = state
            log.log(level, message, extra={"instance": self.instance})
            self._state_metric.state(state.partition(":")[0])

    # -- one session: connect, lead, publish -------------------------------------

    def _session(self) -> None:
        try:
            self.outbox.connect()
            while not self.stopping:
                if self.outbox.try_lead(self.instance):
                    break
                self._set_state("standby", f"relay {self.instance} is standing by")
                self._stopping.wait(1.0)
            if self.stopping:
                return
            self._set_state("leading", f"relay {self.instance} is leading")
            publisher = KafkaPublisher(self.settings, self._kafka_unreachable)
            try:
                self._publish(publisher)
            except DeliveryFailed:
                publisher.abandon(self.settings.relay_drain_timeout)
                raise
            except KafkaException as exc:
                # Anything else librdkafka raises mid-publish: start over from
                # the recorded position with a new producer.
                publisher.abandon(self.settings.relay_drain_timeout)
                raise KafkaTrouble(describe_error(exc)) from exc
        except psycopg.errors.UndefinedTable as exc:
            raise PermanentError(
                f"the events table of {self.application_name!r} does not exist in schema "
                f"{self.settings.postgres_schema!r}; run 'cqrskit db init' first"
            ) from exc
        except psycopg.OperationalError as exc:
            raise LostSession(str(exc).strip().splitlines()[-1]) from exc
        finally:
            self.outbox.close()

    def _kafka_unreachable(self, reason: str) -> None:
        self._set_state(
            "kafka-unreachable", f"Kafka unreachable, holding messages: {reason}", logging.WARNING
        )

    def _publish(self, publisher: KafkaPublisher) -> None:
        settings = self.settings
        after = self.outbox.position()
        self.position = after
        inflight: deque[_Page] = deque()
        outbox = _OutboxThread(self.outbox, settings.relay_page_size)
        try:
            self._loop(publisher, outbox, after, inflight)
        finally:
            outbox.close()

    def _loop(
        self, publisher: KafkaPublisher, outbox: _OutboxThread, after: int, inflight: deque[_Page]
    ) -> None:
        settings = self.settings
        last_beat = time.monotonic()
        prefix = self.settings.topic_prefix or self.application_name.lower()
        marked, marked_at = -1, float("-inf")
        measured_at = float("-inf")
        while not self.stopping:
            rows: list[OutboxRow] = []
            if len(inflight) < settings.relay_pages_in_flight:
                rows = outbox.read(after)
                if rows:
                    inflight.append(self._send(publisher, rows))
                    after = rows[-1][0]
            now = time.monotonic()
            if (after > marked and (not rows or now - marked_at > 0.05)) or now - marked_at > 1.0:
                publisher.publish_watermark(prefix, after)
                marked, marked_at = after, now
            publisher.poll(0)
            if self._retire(inflight, outbox):
                last_beat = time.monotonic()
            elif time.monotonic() - last_beat > 1.0:
                self.outbox.heartbeat()
                last_beat = time.monotonic()
            self._recorded(outbox)
            if now - measured_at > 1.0:
                self._measure_lag()
                measured_at = now
            if not rows:
                if inflight:
                    publisher.poll(0.05)
                else:
                    # Waiting holds the session: let the records go first.
                    self._recorded(outbox, wait=True)
                    self.outbox.wait_for_events(0.5)
        self._drain(publisher, inflight, outbox)

    def _send(self, publisher: KafkaPublisher, rows: list[OutboxRow]) -> _Page:
        # The hot loop: one pass per published event, so no call or
        # allocation that can be hoisted out of it stays in it. Everything
        # that depends only on the event class (types, Kafka topic, encoded
        # type header) is looked up once per class; librdkafka's produce is
        # called directly, and the publisher's waiting produce only when the
        # local queue is full.
        page = _Page(
            last=rows[-1][0], outstanding=len(rows), size=len(rows), sent_at=time.monotonic()
        )
        self._page_events.observe(len(rows))
        enqueue = publisher.enqueue
        ack = page.ack
        routes = self._routes
        for position, aggregate_id, version, event_topic, state in rows:
            route = routes.get(event_topic) or self._route(publisher, event_topic)
            topic, event_type, aggregate_type, type_header = route
            value, traceparent = encode_envelope(
                position, aggregate_id, version, event_topic, event_type, aggregate_type, state
            )
            headers: list[tuple[str, str | bytes | None]] = [
                type_header,
                (HEADER_POSITION, b"%d" % position),
            ]
            if traceparent:
                headers.append((HEADER_TRACEPARENT, traceparent.encode()))
            key = aggregate_id.encode()
            try:
                enqueue(topic, value, key, headers=headers, on_delivery=ack)
            except BufferError:
                publisher.produce(topic, key, value, headers, ack)
        return page

    def _route(self, publisher: KafkaPublisher, event_topic: str) -> _Route:
        """Where an event class's events go and their type header; computed once per class."""
        event_type, aggregate_type = event_type_of(event_topic)
        topic = topic_for(self.settings, self.application_name, aggregate_type)
        publisher.ensure_topic(topic)
        route = (topic, event_type, aggregate_type, (HEADER_EVENT_TYPE, event_type.encode()))
        self._routes[event_topic] = route
        return route

    def _retire(self, inflight: deque[_Page], outbox: _OutboxThread) -> bool:
        """Have the last position of the acknowledged head pages recorded; True if any."""
        acked: int | None = None
        try:
            while inflight and inflight[0].outstanding == 0:
                page = inflight[0]
                if page.error is not None:
                    raise DeliveryFailed(f"message not delivered: {page.error.str()}")
                inflight.popleft()
                acked = page.last
                self._published.inc(page.size)
                self._ack_seconds.observe(time.monotonic() - page.sent_at)
        finally:
            if acked is not None:
                outbox.record(acked)
        if acked is None:
            return False
        if self._state != "leading":
            self._set_state("leading", f"relay {self.instance} is publishing again")
        return True

    def _recorded(self, outbox: _OutboxThread, wait: bool = False) -> None:
        """Take note of the positions recorded; raise if recording failed."""
        position = outbox.recorded(wait)
        if position is not None:
            self.position = position

    def _measure_lag(self) -> None:
        _head, events, seconds = self.outbox.lag(self.position or 0)
        metrics.relay_lag_events.labels(self.application_name).set(events)
        metrics.relay_lag_seconds.labels(self.application_name).set(seconds)

    def _drain(
        self, publisher: KafkaPublisher, inflight: deque[_Page], outbox: _OutboxThread
    ) -> None:
        deadline = time.monotonic() + self.settings.relay_drain_timeout
        while inflight and time.monotonic() < deadline:
            publisher.poll(0.1)
            self._retire(inflight, outbox)
        self._recorded(outbox, wait=True)
        if inflight:
            log.warning(
                "stopping with %d pages unacknowledged; the next relay sends them again",
                len(inflight),
            )
