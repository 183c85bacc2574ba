"""Searches over documents in memory: the second implementation of the view readers.

Evaluates :class:`~cqrskit.queries.Criteria` (terms, sets, ranges, full
text where every word must appear, sorts) as Elasticsearch would for
keyword and numeric fields; aggregations are Elasticsearch's own language
and are refused. :class:`AsyncMemorySearch` awaits the same.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from cqrskit.errors import BadCursor, PermanentError
from cqrskit.queries import METADATA, AnyOf, Between, Criteria, Hits, Order, Term, TextMatch

__all__ = ["AsyncMemorySearch", "MemorySearch"]


class MemorySearch:
    """A :class:`~cqrskit.queries.ViewReader` over ``indices`` (index or alias -> id -> source)."""

    address = "memory"

    def __init__(self, indices: dict[str, dict[str, dict[str, Any]]] | None = None):
        self.indices = indices if indices is not None else {}
        #: Open listings: cursor -> the matching sources, as of the first page.
        self._listings: dict[str, list[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        """A copy of the stored document, or None."""
        found = self.indices.get(index, {}).get(doc_id)
        return copy.deepcopy(found) if found is not None else None

    def count(self, index: str, criteria: Criteria) -> int:
        """How many documents match."""
        return len(self._matching(index, criteria))

    def aggregate(
        self, index: str, criteria: Criteria, aggregations: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Refused: aggregations are Elasticsearch's language."""
        raise PermanentError(f"query on {index} refused: aggregations need Elasticsearch")

    def page(self, index: str, criteria: Criteria, size: int, cursor: str | None) -> Hits:
        """One page; a cursor continues the listing as it was at its first page."""
        if cursor:
            listing_id, _, served_text = cursor.partition(":")
            if listing_id not in self._listings or not served_text.isdigit():
                raise BadCursor("the cursor is not one this service issued")
            listing, served = self._listings[listing_id], int(served_text)
        else:
            listing_id, served = str(next(self._ids)), 0
            listing = _sorted(self._matching(index, criteria), criteria.order)
            self._listings[listing_id] = listing
        chunk = listing[served : served + size]
        served += len(chunk)
        sources = [copy.deepcopy(s) for s in chunk]
        if len(chunk) < size or served >= len(listing):
            del self._listings[listing_id]
            return Hits(sources, len(listing))
        return Hits(sources, len(listing), f"{listing_id}:{served}")

    def _matching(self, index: str, criteria: Criteria) -> list[dict[str, Any]]:
        documents = self.indices.get(index, {})
        return [documents[i] for i in sorted(documents) if _matches(documents[i], criteria)]


class AsyncMemorySearch:
    """:class:`MemorySearch`, awaited (for the async bus in tests); shares its documents."""

    def __init__(self, memory: MemorySearch | None = None):
        self.memory = memory or MemorySearch()
        self.address = self.memory.address

    async def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        """A copy of the stored document, or None."""
        return self.memory.get(index, doc_id)

    async def count(self, index: str, criteria: Criteria) -> int:
        """How many documents match."""
        return self.memory.count(index, criteria)

    async def aggregate(
        self, index: str, criteria: Criteria, aggregations: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Refused: aggregations are Elasticsearch's language."""
        return self.memory.aggregate(index, criteria, aggregations)

    async def page(self, index: str, criteria: Criteria, size: int, cursor: str | None) -> Hits:
        """One page; see :meth:`MemorySearch.page`."""
        return self.memory.page(index, criteria, size, cursor)


def _sorted(sources: list[dict[str, Any]], order: tuple[Order, ...]) -> list[dict[str, Any]]:
    ordered = list(sources)  # stable: ties keep the id order
    for clause in reversed(order):
        ordered.sort(key=_by(clause.field), reverse=clause.descending)
    return ordered


def _by(field: str) -> Callable[[dict[str, Any]], Any]:
    """A sort key on ``field``; documents without it sort after the others."""

    def key(source: dict[str, Any]) -> Any:
        value = _value(source, field)
        return (value is None, value)

    return key


def _tokens(text: object) -> set[str]:
    return set(str(text or "").lower().split())


def _matches(source: Mapping[str, Any], criteria: Criteria) -> bool:
    if _value(source, f"{METADATA}.deleted") is True:
        return False
    return all(_passes(source, f) for f in criteria.filters) and all(
        _says(source, t) for t in criteria.texts
    )


def _passes(source: Mapping[str, Any], clause: Term | AnyOf | Between) -> bool:
    value = _value(source, clause.field)
    if isinstance(clause, Term):
        return bool(value == clause.value)
    if isinstance(clause, AnyOf):
        return value in clause.values
    if value is None:
        return False
    return (
        (clause.gte is None or value >= clause.gte)
        and (clause.lte is None or value <= clause.lte)
        and (clause.gt is None or value > clause.gt)
        and (clause.lt is None or value < clause.lt)
    )


def _says(source: Mapping[str, Any], match: TextMatch) -> bool:
    wanted = _tokens(match.text)
    return any(wanted <= _tokens(_value(source, f)) for f in match.fields)


def _value(source: Mapping[str, Any], field: str) -> Any:
    value: Any = source
    for part in field.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value
