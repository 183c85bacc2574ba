"""A small, typed search builder over one read model; it describes, a bus runs.

Each method returns a new builder; the last call (:meth:`Search.get`,
:meth:`~Search.count`, :meth:`~Search.aggregate`, :meth:`~Search.page`)
returns a :class:`~cqrskit.queries.Read`, which the sync or the async query
bus runs. Deep paging gives each page a cursor from one consistent view of
the index, so every document is returned exactly once, however many pages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from cqrskit.errors import BadCursor
from cqrskit.queries._criteria import (
    METADATA,
    AnyOf,
    Between,
    Criteria,
    FieldValue,
    Filter,
    Order,
    Term,
    TextMatch,
)
from cqrskit.queries._ports import Hits
from cqrskit.queries._reads import Aggregate, CountDocuments, GetDocument, ListDocuments, Read

__all__ = ["BadCursor", "FieldValue", "Page", "Search"]

V = TypeVar("V", bound=BaseModel)


class Page(BaseModel, Generic[V]):
    """One page of results; pass ``cursor`` back for the next (None: last page)."""

    model_config = ConfigDict(frozen=True)

    items: list[V]
    total: int
    cursor: str | None = None


class Search(Generic[V]):
    """Filters, full text, sorting and aggregations over one read model.

    The bus gives a handler one, typed by the handler's view model.
    """

    def __init__(self, view: type[V], criteria: Criteria | None = None):
        self.view = view
        self.criteria = criteria or Criteria()

    def _with(
        self,
        *,
        filters: tuple[Filter, ...] | None = None,
        texts: tuple[TextMatch, ...] | None = None,
        order: tuple[Order, ...] | None = None,
    ) -> Search[V]:
        c = self.criteria
        return Search(
            self.view,
            Criteria(
                c.filters if filters is None else filters,
                c.texts if texts is None else texts,
                c.order if order is None else order,
            ),
        )

    # -- building ------------------------------------------------------------------

    def where(self, **equal: FieldValue | None) -> Search[V]:
        """Exact matches on keyword, numeric, date or boolean fields; None is ignored."""
        terms = tuple(Term(name, value) for name, value in equal.items() if value is not None)
        return self._with(filters=self.criteria.filters + terms)

    def where_in(self, field: str, values: Sequence[FieldValue] | None) -> Search[V]:
        """The field equals any of ``values`` (ignored if None)."""
        if values is None:
            return self
        return self._with(filters=(*self.criteria.filters, AnyOf(field, tuple(values))))

    def range(
        self,
        field: str,
        *,
        gte: FieldValue | None = None,
        lte: FieldValue | None = None,
        gt: FieldValue | None = None,
        lt: FieldValue | None = None,
    ) -> Search[V]:
        """Bounds on a numeric or date field; unset bounds are ignored."""
        if gte is None and lte is None and gt is None and lt is None:
            return self
        bounds = Between(field, gte=gte, lte=lte, gt=gt, lt=lt)
        return self._with(filters=(*self.criteria.filters, bounds))

    def text(self, query: str | None, *fields: str) -> Search[V]:
        """Full text: every word of ``query`` in one of ``fields`` (ignored if empty)."""
        if not query:
            return self
        return self._with(texts=(*self.criteria.texts, TextMatch(query, fields)))

    def sort(self, *fields: str) -> Search[V]:
        """Sort by fields; ``-field`` sorts descending."""
        order = tuple(Order(f.lstrip("-"), f.startswith("-")) for f in fields)
        return self._with(order=self.criteria.order + order)

    # -- what to run ---------------------------------------------------------------

    def get(self, doc_id: str) -> Read[V | None]:
        """The document with ``doc_id`` (real-time: no refresh needed), or None."""
        return Read(GetDocument(doc_id), self._document)

    def count(self) -> Read[int]:
        """How many documents match."""
        return Read(CountDocuments(self.criteria), int)

    def aggregate(self, aggregations: Mapping[str, Any]) -> Read[dict[str, Any]]:
        """Elasticsearch aggregations over the matching documents; their results."""
        return Read(Aggregate(self.criteria, dict(aggregations)), dict)

    def page(self, size: int = 50, cursor: str | None = None) -> Read[Page[V]]:
        """One page of at most ``size`` matches, continuing from ``cursor``.

        Running it raises :class:`BadCursor` when the cursor is malformed or
        its point in time expired.
        """
        return Read(ListDocuments(self.criteria, size, cursor), self._page)

    def _document(self, source: dict[str, Any] | None) -> V | None:
        if source is None:
            return None
        meta = source.pop(METADATA, {}) or {}
        return None if meta.get("deleted") else self.view.model_validate(source)

    def _page(self, hits: Hits) -> Page[V]:
        items = []
        for source in hits.sources:
            source.pop(METADATA, None)
            items.append(self.view.model_validate(source))
        return Page[V](items=items, total=hits.total, cursor=hits.cursor)
