"""A small, typed search builder over one read model, with opaque cursors.

Deep paging uses a point in time and ``search_after``: a page's cursor
carries both, so the pages of one listing come from one consistent view of
the index and every document is returned exactly once, however many pages.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import orjson
from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch, NotFoundError
from pydantic import BaseModel, ConfigDict

from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.errors import BadCursor, PermanentError

__all__ = ["BadCursor", "Page", "Search"]

V = TypeVar("V", bound=BaseModel)

_METADATA = "cqrskit"
_NOT_DELETED = {"bool": {"must_not": {"term": {f"{_METADATA}.deleted": True}}}}


class Page(BaseModel, Generic[V]):
    """One page of results; pass ``cursor`` back for the next (None: last page)."""

    model_config = ConfigDict(frozen=True)

    items: list[V]
    total: int
    cursor: str | None = None
    stale: bool = False


class Search(Generic[V]):
    """Filters, full text, sorting and aggregations over one read model's alias.

    Each method returns a new builder; nothing runs until :meth:`page`,
    :meth:`get`, :meth:`count` or :meth:`aggregate`. Every call raises
    :class:`ServiceUnavailable` (503-worthy) when Elasticsearch cannot answer.
    """

    def __init__(
        self,
        es: Elasticsearch,
        index: str,
        view: type[V],
        *,
        url: str,
        filters: Sequence[dict[str, Any]] = (),
        must: Sequence[dict[str, Any]] = (),
        sort: Sequence[dict[str, Any]] = (),
    ):
        self.es = es
        self.index = index
        self.view = view
        self.url = url
        self._filters = list(filters)
        self._must = list(must)
        self._sort = list(sort)

    def _with(self, **changes: Any) -> Search[V]:
        values = {"filters": self._filters, "must": self._must, "sort": self._sort, **changes}
        return Search(self.es, self.index, self.view, url=self.url, **values)

    # -- building ------------------------------------------------------------------

    def where(self, **equal: Any) -> Search[V]:
        """Exact matches on keyword, numeric, date or boolean fields; None is ignored."""
        terms = [{"term": {field: value}} for field, value in equal.items() if value is not None]
        return self._with(filters=self._filters + terms)

    def where_in(self, field: str, values: Sequence[Any] | None) -> Search[V]:
        """The field equals any of ``values`` (ignored if None)."""
        if values is None:
            return self
        return self._with(filters=[*self._filters, {"terms": {field: list(values)}}])

    def range(
        self, field: str, *, gte: Any = None, lte: Any = None, gt: Any = None, lt: Any = None
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
        with self._translated():
            try:
                found = self.es.get(index=self.index, id=doc_id)
            except NotFoundError:
                return None
        source = dict(found["_source"])
        meta = source.pop(_METADATA, {}) or {}
        return None if meta.get("deleted") else self.view.model_validate(source)

    def count(self) -> int:
        """How many documents match."""
        with self._translated():
            return int(self.es.count(index=self.index, query=self._query())["count"])

    def aggregate(self, aggregations: Mapping[str, Any]) -> dict[str, Any]:
        """Run Elasticsearch aggregations over the matching documents; return their results."""
        with self._translated():
            found = self.es.search(
                index=self.index, query=self._query(), size=0, aggregations=dict(aggregations)
            )
        return dict(found["aggregations"])

    def page(self, size: int = 50, cursor: str | None = None) -> Page[V]:
        """One page of at most ``size`` matches, continuing from ``cursor``.

        Raises:
            BadCursor: the cursor is malformed or its point in time expired.
        """
        after: list[Any] | None = None
        served = 0
        if cursor:
            pit, after, served = _decode(cursor)
        else:
            with self._translated():
                pit = self.es.open_point_in_time(index=self.index, keep_alive="2m")["id"]
        try:
            with self._translated():
                found = self.es.search(
                    pit={"id": pit, "keep_alive": "2m"},
                    query=self._query(),
                    size=size,
                    sort=[*self._sort, {"_shard_doc": "asc"}],
                    search_after=after,
                    track_total_hits=True,
                )
        except PermanentError as exc:
            raise BadCursor(f"the cursor cannot be used any more ({exc}); start again") from exc
        hits = found["hits"]["hits"]
        items = []
        for hit in hits:
            source = dict(hit["_source"])
            source.pop(_METADATA, None)
            items.append(self.view.model_validate(source))
        total = int(found["hits"]["total"]["value"])
        next_pit = found.get("pit_id", pit)
        served += len(hits)
        if len(hits) < size or served >= total:
            with self._translated():
                self.es.options(ignore_status=404).close_point_in_time(id=next_pit)
            return Page[V](items=items, total=total, cursor=None)
        cursor = _encode(next_pit, hits[-1]["sort"], served)
        return Page[V](items=items, total=total, cursor=cursor)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except TransportError as exc:
            raise es_backend.unavailable(self.url, str(exc)) from exc
        except ApiError as exc:
            if es_backend.busy(exc):
                raise es_backend.unavailable(self.url, str(exc)) from exc
            raise PermanentError(f"query on {self.index} refused: {exc}") from exc


def _encode(pit: str, after: list[Any], served: int) -> str:
    data = orjson.dumps({"p": pit, "a": after, "n": served})
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, list[Any], int]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        pit, after, served = data["p"], data["a"], data["n"]
        if not (isinstance(pit, str) and isinstance(after, list) and isinstance(served, int)):
            raise TypeError("wrong shape")
    except (ValueError, TypeError, KeyError) as exc:
        raise BadCursor("the cursor is not one this service issued") from exc
    return pit, after, served
