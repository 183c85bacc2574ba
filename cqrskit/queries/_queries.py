"""Queries: pydantic models, one handler each, served by a sync and an async bus.

A handler runs no I/O: it turns its query into a :class:`~cqrskit.queries.Read`
on its read model (see :mod:`cqrskit.queries._reads`). :class:`QueryBus`
runs reads blocking, :class:`AsyncQueryBus` awaits them; both wait for
read-your-writes the same way, guard each read model with the same breaker
and bulkheads (:mod:`cqrskit.queries._guard`), and answer an :class:`Answer`.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from cqrskit.errors import (
    FieldError,
    QueryRejected,
    ServiceUnavailable,
    StaleRead,
    UnknownQuery,
)
from cqrskit.queries._freshness import AsyncPositionWatch, Reached, wait_for_position
from cqrskit.queries._guard import BreakerPolicy, Guard
from cqrskit.queries._ports import (
    AsyncCheckpointReader,
    AsyncViewReader,
    CheckpointReader,
    ViewReader,
)
from cqrskit.queries._reads import Read, arun, run
from cqrskit.queries._search import Search
from cqrskit.topology import IndexNames

__all__ = [
    "Answer",
    "AsyncQueryBus",
    "AsyncQueryPorts",
    "Limits",
    "Query",
    "QueryBus",
    "QueryHandlers",
    "QueryPorts",
    "StaleRead",
]

Q = TypeVar("Q", bound="Query")
V = TypeVar("V", bound=BaseModel)
T = TypeVar("T")

#: What a query handler is: the query and a search over its view, to a read.
Handler = Callable[[Q, Search[V]], Read[Any]]

OnStale = Literal["error", "flag"]


class Query(BaseModel):
    """Base class of queries: frozen, validated, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Answer(Generic[T]):
    """A query's answer, and whether it has what was asked of it.

    ``fresh`` is True when no position was asked, or when the read model had
    the asked position searchable. A stale answer (``on_stale="flag"``)
    says by how many positions the read model was ``behind`` it.
    """

    value: T
    fresh: bool = True
    #: How many positions short of the asked one the read model was (0 when fresh).
    behind: int = 0

    @property
    def stale(self) -> bool:
        """Not fresh: answered without the asked position."""
        return not self.fresh


@dataclass(frozen=True)
class _Registration:
    view_name: str
    view: type[BaseModel]
    handler: Handler[Any, Any]


class QueryHandlers:
    """A registry of one handler per query type, each bound to one read model.

    Each handler registers with the decorator, naming its read model::

        queries = QueryHandlers()

        @queries.handles(OrderById, view="order_summaries", model=OrderSummary)
        def order_by_id(
            query: OrderById, search: Search[OrderSummary]
        ) -> Read[OrderSummary | None]:
            return search.get(str(query.order_id))
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Query], _Registration] = {}

    def handles(
        self, query_class: type[Q], *, view: str, model: type[V]
    ) -> Callable[[Handler[Q, V]], Handler[Q, V]]:
        """Decorator: the function answers ``query_class`` from read model ``view``."""

        def register(func: Handler[Q, V]) -> Handler[Q, V]:
            if query_class in self._handlers:
                raise ValueError(f"a handler for {query_class.__name__} is already registered")
            self._handlers[query_class] = _Registration(view, model, func)
            return func

        return register

    def registration(self, query: Query) -> _Registration:
        """The handler, view and model of ``query``'s type.

        Raises:
            UnknownQuery: no handler is registered for it.
        """
        try:
            return self._handlers[type(query)]
        except KeyError:
            raise UnknownQuery(type(query).__name__) from None

    def read(self, query: Query) -> tuple[str, Read[Any]]:
        """The read model ``query`` is answered from, and the read that answers it (no I/O).

        Raises:
            UnknownQuery: no handler is registered for the query's type.
        """
        registration = self.registration(query)
        return registration.view_name, registration.handler(query, Search(registration.view))

    @staticmethod
    def parse(query_class: type[Q], data: dict[str, Any]) -> Q:
        """Build a query from untrusted data.

        Raises:
            QueryRejected: the data is invalid; lists each field path and reason.
        """
        try:
            return query_class.model_validate(data)
        except ValidationError as exc:
            errors = [
                FieldError(".".join(str(p) for p in e["loc"]) or "(root)", e["msg"])
                for e in exc.errors()
            ]
            raise QueryRejected(query_class.__name__, errors) from exc


@dataclass(frozen=True)
class QueryPorts:
    """What a blocking bus reads: the views, the checkpoints, and how to close their client."""

    views: ViewReader
    checkpoints: CheckpointReader
    close: Callable[[], None] | None = None


@dataclass(frozen=True)
class AsyncQueryPorts:
    """What an awaited bus reads: the views, the checkpoints, and how to close their client."""

    views: AsyncViewReader
    checkpoints: AsyncCheckpointReader
    close: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Limits:
    """What protects each read model on the query side (settings ``query_*``)."""

    #: Seconds a read-your-writes query waits by default (``read_wait``).
    read_wait: float = 5.0
    #: Reads of one read model in flight at a time.
    max_reads: int = 64
    #: Read-your-writes waits on one read model at a time.
    max_waits: int = 1000
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)


class _Bus:
    """What both buses share: handlers, names, limits and one guard per read model."""

    def __init__(self, handlers: QueryHandlers, names: IndexNames, limits: Limits):
        self.handlers = handlers
        self.names = names
        self.limits = limits
        self._guards: dict[str, Guard] = {}
        self._lock = threading.Lock()

    def guard(self, view: str) -> Guard:
        """The breaker and bulkheads of read model ``view``."""
        with self._lock:
            if view not in self._guards:
                self._guards[view] = Guard.of(
                    view, self.limits.breaker, self.limits.max_reads, self.limits.max_waits
                )
            return self._guards[view]

    def timeout(self, wait: float | None) -> float:
        return self.limits.read_wait if wait is None else wait

    @staticmethod
    def judged(
        view: str, position: int, reached: Reached, on_stale: OnStale, timeout: float
    ) -> tuple[str | None, int]:
        """The index to read and how far behind, after a wait; raises when stale is an error."""
        if reached.index is not None:
            return reached.index, 0
        if on_stale == "error":
            raise StaleRead(view, position, timeout)
        return None, max(0, position - reached.searchable)


@contextmanager
def _breaker(guard: Guard) -> Iterator[None]:
    """Let the block through the read model's breaker, and tell it how the block went.

    Only the store's failure to answer counts against it. Any other error
    means the store answered (a bad cursor, a bug in a step). A block
    cancelled or interrupted (not an ``Exception``) heard nothing from the
    store: its ticket is released, neither a success nor a failure, so a
    half-open breaker's trials are always settled.

    Raises:
        CircuitOpen: the breaker refuses the read.
    """
    ticket = guard.breaker.admit()
    try:
        yield
    except Exception as exc:
        guard.breaker.record(not isinstance(exc, ServiceUnavailable), ticket)
        raise
    except BaseException:
        guard.breaker.release(ticket)
        raise
    guard.breaker.record(True, ticket)


class QueryBus(_Bus):
    """Answers queries from the read models, blocking; never touches the event store.

    ``ports.views`` runs the reads and ``ports.checkpoints`` says how far
    each index is searchable; ``names`` gives each view's alias (build one with
    :meth:`cqrskit.runtime.Runtime.query_bus`). ``min_position`` gives
    read-your-writes: pass a command result's position and the answer waits
    (up to ``wait`` seconds, default ``read_wait``) until the read model has
    it searchable. On timeout it raises :class:`StaleRead`
    (``on_stale="error"``) or answers anyway, marked stale (``on_stale="flag"``).
    """

    def __init__(
        self,
        handlers: QueryHandlers,
        ports: QueryPorts,
        names: IndexNames,
        limits: Limits | None = None,
    ):
        super().__init__(handlers, names, limits or Limits())
        self.views = ports.views
        self.checkpoints = ports.checkpoints
        self._close = ports.close

    def ask(
        self,
        query: Query,
        *,
        min_position: int | None = None,
        on_stale: OnStale = "error",
        wait: float | None = None,
    ) -> Answer[Any]:
        """Answer ``query``; with ``min_position``, only once it is searchable.

        Raises:
            UnknownQuery: no handler for the query's type.
            StaleRead: ``min_position`` not searchable in time and ``on_stale="error"``.
            CircuitOpen: the read model's store failed too often of late.
            Overloaded: the read model has as many reads or waits as allowed.
            ServiceUnavailable: the read models' store cannot answer.
        """
        view, read = self.handlers.read(query)
        guard = self.guard(view)
        index: str | None = None
        behind = 0
        if min_position:
            timeout = self.timeout(wait)
            with guard.waits.slot(), _breaker(guard):
                reached = wait_for_position(
                    self.checkpoints, self.names, view, min_position, timeout=timeout
                )
            index, behind = self.judged(view, min_position, reached, on_stale, timeout)
        # The index that has the position, not the alias: a swap in between
        # may put an index in service that lacks it yet.
        target = index or self.names.alias(view)
        with guard.reads.slot(), _breaker(guard):
            value = run(self.views, target, read)
        return Answer(value, fresh=behind == 0, behind=behind)

    def close(self) -> None:
        """Close the clients the bus was built with (if it owns them)."""
        if self._close is not None:
            self._close()


class AsyncQueryBus(_Bus):
    """:class:`QueryBus`, awaited: no read or wait holds a thread.

    The same handlers, waits, breakers and bulkheads; build one with
    :meth:`cqrskit.runtime.Runtime.async_query_bus` and close it with
    :meth:`aclose`.
    """

    def __init__(
        self,
        handlers: QueryHandlers,
        ports: AsyncQueryPorts,
        names: IndexNames,
        limits: Limits | None = None,
    ):
        super().__init__(handlers, names, limits or Limits())
        self.views = ports.views
        self.checkpoints = ports.checkpoints
        self._close = ports.close
        self._watches: dict[str, AsyncPositionWatch] = {}

    def watch(self, view: str) -> AsyncPositionWatch:
        """The one watch of read model ``view``'s checkpoints that every wait on it shares."""
        if view not in self._watches:
            self._watches[view] = AsyncPositionWatch(self.checkpoints, self.names, view)
        return self._watches[view]

    async def ask(
        self,
        query: Query,
        *,
        min_position: int | None = None,
        on_stale: OnStale = "error",
        wait: float | None = None,
    ) -> Answer[Any]:
        """Answer ``query``; see :meth:`QueryBus.ask` (the same errors)."""
        view, read = self.handlers.read(query)
        guard = self.guard(view)
        index: str | None = None
        behind = 0
        if min_position:
            timeout = self.timeout(wait)
            with guard.waits.slot(), _breaker(guard):
                reached = await self.watch(view).wait(min_position, timeout)
            index, behind = self.judged(view, min_position, reached, on_stale, timeout)
        target = index or self.names.alias(view)
        with guard.reads.slot(), _breaker(guard):
            value = await arun(self.views, target, read)
        return Answer(value, fresh=behind == 0, behind=behind)

    async def aclose(self) -> None:
        """Close the clients the bus was built with (if it owns them)."""
        if self._close is not None:
            await self._close()
