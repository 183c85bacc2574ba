"""Queries: pydantic models, one handler each, answered from one read model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from cqrskit.errors import FieldError, QueryRejected, StaleRead, UnknownQuery
from cqrskit.queries._freshness import wait_for_position
from cqrskit.queries._ports import CheckpointReader, ViewReader
from cqrskit.queries._search import Search
from cqrskit.topology import IndexNames

__all__ = ["Query", "QueryBus", "QueryHandlers", "Stale", "StaleRead"]

Q = TypeVar("Q", bound="Query")
V = TypeVar("V", bound=BaseModel)


class Query(BaseModel):
    """Base class of queries: frozen, validated, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Stale(Generic[V]):
    """An answer given without the asked position applied (``on_stale='flag'``)."""

    value: Any
    stale: bool


@dataclass(frozen=True)
class _Registration:
    view_name: str
    view: type[BaseModel]
    handler: Callable[[Any, Search[Any]], Any]


class QueryHandlers:
    """A registry of one handler per query type, each bound to one read model::

    queries = QueryHandlers()

    @queries.handles(OrderById, view="order_summaries", model=OrderSummary)
    def order_by_id(query: OrderById, search: Search[OrderSummary]) -> OrderSummary | None:
        return search.get(str(query.order_id))
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Query], _Registration] = {}

    def handles(
        self, query_class: type[Q], *, view: str, model: type[V]
    ) -> Callable[[Callable[[Q, Search[V]], Any]], Callable[[Q, Search[V]], Any]]:
        """Decorator: the function answers ``query_class`` from read model ``view``."""

        def register(func: Callable[[Q, Search[V]], Any]) -> Callable[[Q, Search[V]], Any]:
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


class QueryBus:
    """Answers queries from the read models; never touches the event store.

    ``views`` runs the searches and ``checkpoints`` says how far each index
    has applied the store; ``names`` gives each view's alias (build one
    with :meth:`cqrskit.runtime.Runtime.query_bus`). ``min_position`` gives
    read-your-writes: pass a command result's position and the answer waits
    (up to ``wait`` seconds, default ``read_wait``) until the read model has
    applied it. On timeout it raises :class:`StaleRead`
    (``on_stale="error"``) or answers anyway, marked stale
    (``on_stale="flag"``).
    """

    def __init__(
        self,
        handlers: QueryHandlers,
        views: ViewReader,
        checkpoints: CheckpointReader,
        names: IndexNames,
        *,
        read_wait: float,
    ):
        self.handlers = handlers
        self.views = views
        self.checkpoints = checkpoints
        self.names = names
        self.read_wait = read_wait

    def search(self, view_name: str, model: type[V]) -> Search[V]:
        """A search over the alias of read model ``view_name``."""
        return Search(self.views, self.names.alias(view_name), model)

    def ask(
        self,
        query: Query,
        *,
        min_position: int | None = None,
        on_stale: Literal["error", "flag"] = "error",
        wait: float | None = None,
    ) -> Stale[Any]:
        """Answer ``query``; ``.stale`` says whether ``min_position`` was applied.

        Raises:
            UnknownQuery: no handler for the query's type.
            StaleRead: ``min_position`` not applied in time and ``on_stale="error"``.
            ServiceUnavailable: the read models' store cannot answer.
        """
        registration = self.handlers.registration(query)
        stale = False
        search = self.search(registration.view_name, registration.view)
        if min_position:
            timeout = self.read_wait if wait is None else wait
            index = wait_for_position(
                self.checkpoints,
                self.names,
                registration.view_name,
                min_position,
                timeout=timeout,
            )
            if index is None:
                if on_stale == "error":
                    raise StaleRead(registration.view_name, min_position, timeout)
                stale = True
            else:
                # The index that has the position, not the alias: a swap in
                # between may put an index in service that lacks it yet.
                search = Search(self.views, index, registration.view)
                # Applied is not yet searchable until the next refresh.
                self.views.refresh(index)
        return Stale(registration.handler(query, search), stale)
