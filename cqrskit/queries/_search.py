"""A small, typed search builder over one read model, with opaque cursors.

The builder makes the query; a :class:`ViewReader` runs it. Deep paging
gives each page a cursor from one consistent view of the index, so every
document is returned exactly once, however many pages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from cqrskit.errors import BadCursor
from cqrskit.queries._ports import ViewReader

__all__ = ["BadCursor", "FieldValue", "Page", "Search"]

V = TypeVar("V", bound=BaseModel)

#: A value a filter compares a field with: keyword, number, date or boolean.
FieldValue = str | int | float | bool | Decimal | UUID | datetime | date

_METADATA = "cqrskit"
_NOT_DELETED = {"bool": {"must_not": {"term": {f"{_METADATA}.deleted": True}}}}


class Page(BaseModel, Generic[V]):
    """One page of results; pass ``cursor`` back for the next (None: last page)."""

    model_config = ConfigDict(frozen=True)

    items: list[V]
    total: int
    cursor: str | None = None
    stale: bool = False


@dataclass(frozen=True)
class Clauses:
    """What a search has been built up to: filters, scored clauses and sorts."""

    filters: Sequence[dict[str, Any]] = ()
    must: Sequence[dict[str, Any]] = ()
    sort: Sequence[dict[str, Any]] = ()


class Search(Generic[V]):
    """Filters, full text, sorting and aggregations over one read model's alias.

    Each method returns a new builder; nothing runs until :meth:`page`,
    :meth:`get`, :meth:`count` or :meth:`aggregate`, on ``views``. Every
    call raises :class:`ServiceUnavailable` (503-worthy) when the store cannot
    answer.
    """

    def __init__(
        self, views: ViewReader, index: str, view: type[V], clauses: Clauses | None = None
    ):
        self.views = views
        self.index = index
        self.view = view
        built = clauses or Clauses()
        self._filters = list(built.filters)
        self._must = list(built.must)
        self._sort = list(built.sort)

    def _with(
        self,
        *,
        filters: list[dict[str, Any]] | None = None,
        must: list[dict[str, Any]] | None = None,
        sort: list[dict[str, Any]] | None = None,
    ) -> Search[V]:
        return Search(
            self.views,
            self.index,
            self.view,
            Clauses(
                self._filters if filters is None else filters,
                self._must if must is None else must,
                self._sort if sort is None else sort,
            ),
        )

    # -- building ------------------------------------------------------------------

    def where(self, **equal: FieldValue | None) -> Search[V]:
        """Exact matches on keyword, numeric, date or boolean fields; None is ignored."""
        terms = [{"term": {field: value}} for field, value in equal.items() if value is not None]
        return self._with(filters=self._filters + terms)

    def where_in(self, field: str, values: Sequence[FieldValue] | None) -> Search[V]:
        """The field equals any of ``values`` (ignored if None)."""
        if values is None:
            return self
        return self._with(filters=[*self._filters, {"terms": {field: list(values)}}])

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
        bounds = {
            k: v for k, v in (("gte", gte), ("lte", lte), ("gt", gt), ("lt", lt)) if v is not None
        }
        if not bounds:
            return self
        return self._with(filters=[*self._filters, {"range": {field: bounds}}])

    def text(self, query: str | None, *fields: str) -> Search[V]:
        """Full-text search of ``query`` in text fields (ignored if empty)."""
        if not query:
            return self
        clause = (
            {"match": {fields[0]: {"query": query, "operator": "and"}}}
            if len(fields) == 1
            else {"multi_match": {"query": query, "fields": list(fields), "operator": "and"}}
        )
        return self._with(must=[*self._must, clause])

    def sort(self, *fields: str) -> Search[V]:
        """Sort by fields; ``-field`` sorts descending."""
        order = [{f.lstrip("-"): {"order": "desc" if f.startswith("-") else "asc"}} for f in fields]
        return self._with(sort=self._sort + order)

    def _query(self) -> dict[str, Any]:
        return {"bool": {"filter": [*self._filters, _NOT_DELETED], "must": self._must}}

    # -- running -------------------------------------------------------------------

    def get(self, doc_id: str) -> V | None:
        """The document with ``doc_id`` (real-time: no refresh needed), or None."""
        source = self.views.get(self.index, doc_id)
        if source is None:
            return None
        meta = source.pop(_METADATA, {}) or {}
        return None if meta.get("deleted") else self.view.model_validate(source)

    def count(self) -> int:
        """How many documents match."""
        return self.views.count(self.index, self._query())

    def aggregate(self, aggregations: Mapping[str, Any]) -> dict[str, Any]:
        """Run Elasticsearch aggregations over the matching documents; return their results."""
        return self.views.aggregate(self.index, self._query(), dict(aggregations))

    def page(self, size: int = 50, cursor: str | None = None) -> Page[V]:
        """One page of at most ``size`` matches, continuing from ``cursor``.

        Raises:
            BadCursor: the cursor is malformed or its point in time expired.
        """
        hits = self.views.page(self.index, self._query(), self._sort, size, cursor)
        items = []
        for source in hits.sources:
            source.pop(_METADATA, None)
            items.append(self.view.model_validate(source))
        return Page[V](items=items, total=hits.total, cursor=hits.cursor)
