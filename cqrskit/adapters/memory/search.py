"""Searches over documents in memory: the second implementation of ``ViewReader``.

Understands the query clauses :class:`~cqrskit.queries.Search` builds
(``term``, ``terms``, ``range``, ``match``/``multi_match`` with the ``and``
operator, ``bool`` with ``filter``/``must``/``must_not``) and its sorts;
aggregations are Elasticsearch's own language and are refused.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from cqrskit.errors import BadCursor, PermanentError
from cqrskit.queries import Hits

__all__ = ["MemorySearch"]


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

    def count(self, index: str, query: dict[str, Any]) -> int:
        """How many documents match."""
        return len(self._matching(index, query))

    def aggregate(
        self, index: str, query: dict[str, Any], aggregations: dict[str, Any]
    ) -> dict[str, Any]:
        """Refused: aggregations are Elasticsearch's language."""
        raise PermanentError(f"query on {index} refused: aggregations need Elasticsearch")

    def page(
        self,
        index: str,
        query: dict[str, Any],
        sort: list[dict[str, Any]],
        size: int,
        cursor: str | None,
    ) -> Hits:
        """One page; a cursor continues the listing as it was at its first page."""
        if cursor:
            listing_id, _, served_text = cursor.partition(":")
            if listing_id not in self._listings or not served_text.isdigit():
                raise BadCursor("the cursor is not one this service issued")
            listing, served = self._listings[listing_id], int(served_text)
        else:
            listing_id, served = str(next(self._ids)), 0
            listing = _sorted(self._matching(index, query), sort)
            self._listings[listing_id] = listing
        chunk = listing[served : served + size]
        served += len(chunk)
        sources = [copy.deepcopy(s) for s in chunk]
        if len(chunk) < size or served >= len(listing):
            del self._listings[listing_id]
            return Hits(sources, len(listing))
        return Hits(sources, len(listing), f"{listing_id}:{served}")

    def refresh(self, index: str) -> None:
        """Nothing to do: writes are visible at once."""

    def _matching(self, index: str, query: dict[str, Any]) -> list[dict[str, Any]]:
        documents = self.indices.get(index, {})
        return [documents[i] for i in sorted(documents) if _matches(documents[i], query)]


def _sorted(sources: list[dict[str, Any]], sort: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ordered = list(sources)  # stable: ties keep the id order
    for clause in reversed(sort):
        ((field, options),) = clause.items()
        ordered.sort(key=_by(field), reverse=options.get("order") == "desc")
    return ordered


def _by(field: str) -> Callable[[dict[str, Any]], Any]:
    """A sort key on ``field``; documents without it sort after the others."""

    def key(source: dict[str, Any]) -> Any:
        value = _value(source, field)
        return (value is None, value)

    return key


def _tokens(text: object) -> set[str]:
    return set(str(text or "").lower().split())


def _matches(source: Mapping[str, Any], clause: Mapping[str, Any]) -> bool:
    ((kind, body),) = clause.items()
    if kind == "bool":
        return (
            all(_matches(source, c) for c in _list(body.get("filter")))
            and all(_matches(source, c) for c in _list(body.get("must")))
            and not any(_matches(source, c) for c in _list(body.get("must_not")))
        )
    if kind == "term":
        ((field, value),) = body.items()
        return bool(_value(source, field) == value)
    if kind == "terms":
        ((field, values),) = body.items()
        return _value(source, field) in values
    if kind == "range":
        ((field, bounds),) = body.items()
        value = _value(source, field)
        checks = {
            "gte": lambda b: value >= b,
            "lte": lambda b: value <= b,
            "gt": lambda b: value > b,
            "lt": lambda b: value < b,
        }
        return value is not None and all(checks[k](b) for k, b in bounds.items())
    if kind == "match":
        ((field, options),) = body.items()
        return _tokens(options["query"]) <= _tokens(_value(source, field))
    if kind == "multi_match":
        wanted = _tokens(body["query"])
        return any(wanted <= _tokens(_value(source, f)) for f in body["fields"])
    raise PermanentError(f"the memory search does not understand {kind!r} clauses")


def _list(clauses: object) -> list[Mapping[str, Any]]:
    if clauses is None:
        return []
    return list(clauses) if isinstance(clauses, list) else [clauses]  # type: ignore[list-item]


def _value(source: Mapping[str, Any], field: str) -> Any:
    value: Any = source
    for part in field.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value
