"""Searches over read models in Elasticsearch, with point-in-time cursors.

Deep paging uses a point in time and ``search_after``: a page's cursor
carries both, so the pages of one listing come from one consistent view of
the index and every document is returned exactly once, however many pages.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError

from cqrskit.adapters.elasticsearch._errors import busy, unavailable
from cqrskit.errors import BadCursor, PermanentError
from cqrskit.queries import Hits

__all__ = ["ElasticsearchSearch"]


class ElasticsearchSearch:
    """The query side's :class:`~cqrskit.queries.ViewReader` in Elasticsearch.

    Every call raises :class:`ServiceUnavailable` (503-worthy) when
    Elasticsearch cannot answer, :class:`PermanentError` when it refuses.
    """

    def __init__(self, es: Elasticsearch, address: str):
        self.es = es
        self.address = address

    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        """The stored document (real-time: no refresh needed), or None."""
        with self._translated(index):
            try:
                found = self.es.get(index=index, id=doc_id)
            except NotFoundError:
                return None
        return dict(found["_source"])

    def count(self, index: str, query: dict[str, Any]) -> int:
        """How many documents match."""
        with self._translated(index):
            return int(self.es.count(index=index, query=query)["count"])

    def aggregate(
        self, index: str, query: dict[str, Any], aggregations: dict[str, Any]
    ) -> dict[str, Any]:
        """Run Elasticsearch aggregations over the matching documents; return their results."""
        with self._translated(index):
            found = self.es.search(index=index, query=query, size=0, aggregations=aggregations)
        return dict(found["aggregations"])

    def page(
        self,
        index: str,
        query: dict[str, Any],
        sort: list[dict[str, Any]],
        size: int,
        cursor: str | None,
    ) -> Hits:
        """One page of at most ``size`` matches, continuing from ``cursor``.

        Raises:
            BadCursor: the cursor is malformed or its point in time expired.
        """
        after: list[Any] | None = None
        served = 0
        if cursor:
            pit, after, served = _decode(cursor)
        else:
            with self._translated(index):
                pit = self.es.open_point_in_time(index=index, keep_alive="2m")["id"]
        try:
            with self._translated(index):
                found = self.es.search(
                    pit={"id": pit, "keep_alive": "2m"},
                    query=query,
                    size=size,
                    sort=[*sort, {"_shard_doc": "asc"}],
                    search_after=after,
                    track_total_hits=True,
                )
        except PermanentError as exc:
            raise BadCursor(f"the cursor cannot be used any more ({exc}); start again") from exc
        hits = found["hits"]["hits"]
        sources = [dict(hit["_source"]) for hit in hits]
        total = int(found["hits"]["total"]["value"])
        next_pit = found.get("pit_id", pit)
        served += len(hits)
        if len(hits) < size or served >= total:
            with self._translated(index):
                self.es.options(ignore_status=404).close_point_in_time(id=next_pit)
            return Hits(sources, total)
        return Hits(sources, total, _encode(next_pit, hits[-1]["sort"], served))

    def refresh(self, index: str) -> None:
        """Make what was applied to ``index`` searchable now."""
        with self._translated(index):
            self.es.indices.refresh(index=index)

    @contextmanager
    def _translated(self, index: str) -> Iterator[None]:
        try:
            yield
        except TransportError as exc:
            raise unavailable(self.address, str(exc)) from exc
        except ApiError as exc:
            if busy(exc):
                raise unavailable(self.address, str(exc)) from exc
            raise PermanentError(f"query on {index} refused: {exc}") from exc


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
