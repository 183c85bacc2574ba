"""Reads of a read model described as data: what a handler returns and a bus runs.

A query handler does no I/O. It builds a :class:`Read`: one request to the
read models' store (a document by id, a count, aggregations, or a page of
matches) and a pure function that turns the store's answer into the
query's. The sync :class:`~cqrskit.queries.QueryBus` runs it on a
:class:`ViewReader`, the async one awaits it on an
:class:`AsyncViewReader`: each handler is written once and served by both.

Matches are described by :class:`~cqrskit.queries.Criteria`, which each
adapter translates into its store's language.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cqrskit.queries._criteria import Criteria
from cqrskit.queries._ports import AsyncViewReader, ViewReader

__all__ = [
    "Aggregate",
    "CountDocuments",
    "GetDocument",
    "ListDocuments",
    "Read",
    "Request",
    "arun",
    "run",
]

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class GetDocument:
    """One document by id, in real time (whatever the last refresh)."""

    doc_id: str


@dataclass(frozen=True)
class CountDocuments:
    """How many documents match."""

    criteria: Criteria


@dataclass(frozen=True)
class Aggregate:
    """Aggregations (the store's own language) over the matching documents."""

    criteria: Criteria
    aggregations: Mapping[str, Any]


@dataclass(frozen=True)
class ListDocuments:
    """One page of at most ``size`` matches, continuing from ``cursor``."""

    criteria: Criteria
    size: int
    cursor: str | None = None


#: What one read asks of the store.
Request = GetDocument | CountDocuments | Aggregate | ListDocuments


@dataclass(frozen=True)
class Read(Generic[T]):
    """One request to a read model and how its answer becomes the query's.

    Built by :class:`~cqrskit.queries.Search`; ``then`` adds a pure step::

        return search.aggregate(aggs).then(lambda found: found["by_status"])
    """

    request: Request
    finish: Callable[[Any], T]

    def then(self, step: Callable[[T], U]) -> Read[U]:
        """The same request, its answer passed through ``step`` as well."""
        finish = self.finish
        return Read(self.request, lambda raw: step(finish(raw)))


def run(views: ViewReader, index: str, read: Read[T]) -> T:
    """Run ``read`` on ``index`` of ``views``, blocking; the handler's answer.

    Raises:
        ServiceUnavailable: the store cannot answer.
        BadCursor: a listing's cursor cannot be used.
        PermanentError: the store refused the request.
    """
    request = read.request
    raw: Any
    if isinstance(request, GetDocument):
        raw = views.get(index, request.doc_id)
    elif isinstance(request, CountDocuments):
        raw = views.count(index, request.criteria)
    elif isinstance(request, Aggregate):
        raw = views.aggregate(index, request.criteria, request.aggregations)
    else:
        raw = views.page(index, request.criteria, request.size, request.cursor)
    return read.finish(raw)


async def arun(views: AsyncViewReader, index: str, read: Read[T]) -> T:
    """Run ``read`` on ``index`` of ``views``, awaiting; see :func:`run`."""
    request = read.request
    raw: Any
    if isinstance(request, GetDocument):
        raw = await views.get(index, request.doc_id)
    elif isinstance(request, CountDocuments):
        raw = await views.count(index, request.criteria)
    elif isinstance(request, Aggregate):
        raw = await views.aggregate(index, request.criteria, request.aggregations)
    else:
        raw = await views.page(index, request.criteria, request.size, request.cursor)
    return read.finish(raw)
