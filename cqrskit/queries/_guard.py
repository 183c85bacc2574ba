"""A circuit breaker and two bulkheads per read model, shared by the sync and async buses.

The breaker counts the outcomes of the last ``window`` reads. Once at least
``min_calls`` of them are known and the share that failed (the store could
not answer) reaches ``failure_rate``, it opens: every read is refused at
once with :class:`CircuitOpen`, for ``open_for`` seconds. Then it half-opens
and lets ``half_open_calls`` reads through; if they all succeed it closes,
and one failure opens it again. Errors of the caller's own making (a bad
cursor, a refused request) are not the store's failures and do not count.

Each read gets a ticket from :meth:`Breaker.admit` and hands it back with
its outcome: a read let through before the breaker half-opened is not one
of its trials, whatever it says; a read that ends with no word from the
store (cancelled) frees its trial place and counts for nothing; and trials
still out a whole ``open_for`` after they were let through (hung) no longer
hold the places, so the breaker is never stuck half-open.

The bulkheads bound what one read model may hold at a time: reads in
flight, and read-your-writes waits. A full one refuses at once with
:class:`Overloaded`, so a slow store or a flood of waits cannot take every
thread or connection, and a plain read never queues behind the waits.

Every change of state is one log line and a metric. The state sits behind
a lock held for a few instructions, so one guard serves threads and an
event loop alike (nothing here blocks or awaits).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cqrskit.errors import CircuitOpen, Overloaded
from cqrskit.observability import _metrics as metrics

__all__ = ["Breaker", "BreakerPolicy", "Bulkhead", "Guard"]

log = logging.getLogger("cqrskit.queries")


@dataclass(frozen=True)
class BreakerPolicy:
    """When a read model's breaker opens, how long it stays open, how it tries again."""

    #: How many of the latest reads are judged.
    window: int = 20
    #: No verdict before this many reads are in the window.
    min_calls: int = 5
    #: The share of failed reads in the window that opens the breaker.
    failure_rate: float = 0.5
    #: Seconds the breaker stays open before it lets a few reads try.
    open_for: float = 5.0
    #: Reads let through half-open; all must succeed to close.
    half_open_calls: int = 2


class Breaker:
    """A circuit breaker: closed, open or half-open (see the module's text)."""

    def __init__(
        self,
        view: str,
        policy: BreakerPolicy,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.view = view
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._outcomes: deque[bool] = deque(maxlen=policy.window)
        self._state = "closed"
        self._opened_at = 0.0
        self._trials = 0  # reads let through while half-open
        self._passed = 0  # of which succeeded
        #: Changes each time trials start afresh; a ticket of another round is no trial.
        self._round = 0
        self._trials_at = 0.0  # when the current round of trials began
        metrics.query_breaker_state.labels(view).state("closed")

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``, as the next read would find it."""
        with self._lock:
            self._maybe_half_open()
            return self._state

    def admit(self) -> int:
        """Let one read through, or refuse it; the ticket to give :meth:`record` or :meth:`release`.

        Raises:
            CircuitOpen: the breaker is open, or half-open with its trials taken.
        """
        with self._lock:
            self._maybe_half_open()
            if self._state == "closed":
                return self._round
            if self._state == "half-open":
                if (
                    self._trials >= self.policy.half_open_calls
                    and self._clock() - self._trials_at >= self.policy.open_for
                ):
                    self._new_round()  # the trials out hung: let others try
                if self._trials < self.policy.half_open_calls:
                    self._trials += 1
                    return self._round
            failures = self._outcomes.count(False)
            calls = len(self._outcomes)
            retry = max(0.0, self._opened_at + self.policy.open_for - self._clock())
        metrics.query_refused.labels(self.view, "open").inc()
        raise CircuitOpen(self.view, failures, calls, retry or 1.0)

    def record(self, ok: bool, ticket: int | None = None) -> None:
        """The outcome of a read :meth:`admit` let through with ``ticket``.

        Without a ticket the read counts as one of the current trials.
        """
        with self._lock:
            if self._state == "half-open":
                if ticket is not None and ticket != self._round:
                    return  # let through before these trials began: not one of them
                if not ok:
                    self._open("a trial read failed")
                    return
                self._passed += 1
                if self._passed >= self.policy.half_open_calls:
                    self._set("closed", f"{self._passed} trial reads succeeded")
                    self._outcomes.clear()
                return
            if self._state == "open":
                return  # a read admitted before it opened
            self._outcomes.append(ok)
            calls = len(self._outcomes)
            failures = self._outcomes.count(False)
            if calls >= self.policy.min_calls and failures >= self.policy.failure_rate * calls:
                self._open(f"{failures} of the last {calls} reads failed")

    def release(self, ticket: int) -> None:
        """A read let through with ``ticket`` ended with no word from the store (cancelled).

        It says nothing of the store: a trial's place is free again, and it
        counts neither way.
        """
        with self._lock:
            if self._state == "half-open" and ticket == self._round and self._trials > 0:
                self._trials -= 1

    def _maybe_half_open(self) -> None:
        if self._state == "open" and self._clock() - self._opened_at >= self.policy.open_for:
            self._new_round()
            self._set("half-open", f"{self.policy.open_for:g}s passed")

    def _new_round(self) -> None:
        self._round += 1
        self._trials = self._passed = 0
        self._trials_at = self._clock()

    def _open(self, why: str) -> None:
        self._opened_at = self._clock()
        self._set("open", f"{why}; reads are refused for {self.policy.open_for:g}s")

    def _set(self, state: str, why: str) -> None:
        before, self._state = self._state, state
        metrics.query_breaker_state.labels(self.view).state(state)
        level = logging.WARNING if state == "open" else logging.INFO
        log.log(level, "read model %r circuit breaker %s -> %s: %s", self.view, before, state, why)


class Bulkhead:
    """At most ``limit`` of one kind of work on one read model at a time."""

    def __init__(self, view: str, kind: str, limit: int, what: str):
        self.view = view
        self.kind = kind
        self.limit = limit
        self.what = what
        self.in_use = 0
        self._lock = threading.Lock()
        self._gauge = metrics.query_in_flight.labels(view, kind)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one place for the duration of the block.

        Raises:
            Overloaded: every place is taken.
        """
        with self._lock:
            if self.in_use >= self.limit:
                full = True
            else:
                full = False
                self.in_use += 1
        if full:
            metrics.query_refused.labels(self.view, self.kind).inc()
            raise Overloaded(self.view, self.what, self.limit)
        self._gauge.inc()
        try:
            yield
        finally:
            with self._lock:
                self.in_use -= 1
            self._gauge.dec()


@dataclass
class Guard:
    """What protects one read model: its breaker, its reads and its waits."""

    breaker: Breaker
    reads: Bulkhead
    waits: Bulkhead

    @classmethod
    def of(cls, view: str, policy: BreakerPolicy, max_reads: int, max_waits: int) -> Guard:
        """A guard for read model ``view``."""
        return cls(
            Breaker(view, policy),
            Bulkhead(view, "read", max_reads, "reads"),
            Bulkhead(view, "wait", max_waits, "read-your-writes waits"),
        )
