"""What a search matches, as typed data that each read models' store translates.

:class:`Criteria` holds filters (:class:`Term`, :class:`AnyOf`,
:class:`Between`), full-text matches and sorts. The Elasticsearch adapter
builds them with ``elasticsearch.dsl``; the in-memory one evaluates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

__all__ = [
    "METADATA",
    "AnyOf",
    "Between",
    "Criteria",
    "FieldValue",
    "Filter",
    "Order",
    "Term",
    "TextMatch",
]

#: A value a filter compares a field with: keyword, number, date or boolean.
FieldValue = str | int | float | bool | Decimal | UUID | datetime | date

#: The field of every stored document that holds cqrskit's own bookkeeping
#: (sequence number, deleted flag); never part of a view.
METADATA = "cqrskit"


@dataclass(frozen=True)
class Term:
    """The field equals ``value`` exactly (keyword, number, date or boolean)."""

    field: str
    value: FieldValue


@dataclass(frozen=True)
class AnyOf:
    """The field equals one of ``values``."""

    field: str
    values: tuple[FieldValue, ...]


@dataclass(frozen=True)
class Between:
    """Bounds on a numeric or date field; None bounds are open."""

    field: str
    gte: FieldValue | None = None
    lte: FieldValue | None = None
    gt: FieldValue | None = None
    lt: FieldValue | None = None


#: A filter: it decides whether a document matches, and does not score it.
Filter = Term | AnyOf | Between


@dataclass(frozen=True)
class TextMatch:
    """Every word of ``text`` appears in one of ``fields`` (full text, scored)."""

    text: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Order:
    """Sort by ``field``, ascending unless ``descending``."""

    field: str
    descending: bool = False


@dataclass(frozen=True)
class Criteria:
    """Which documents match, and in what order; deleted documents never match."""

    filters: tuple[Filter, ...] = ()
    texts: tuple[TextMatch, ...] = ()
    order: tuple[Order, ...] = ()
