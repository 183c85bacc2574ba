"""The projection API: a view model, a document-id rule, and handlers per event type.

::

    class OrderSummary(BaseModel):
        order_id: str
        customer_id: str
        status: str = "unknown"
        payment_status: str | None = None

    class OrderSummaries(Projection[OrderSummary]):
        name = "order_summaries"
        view = OrderSummary

        @handles("Order.Placed")
        def placed(self, event: Envelope, doc: OrderSummary | None) -> OrderSummary:
            return OrderSummary(order_id=str(event.aggregate_id), **event.payload ...)

        @handles("Payment.Authorised", doc_id=lambda e: str(e.payload["order_id"]))
        def authorised(self, event: Envelope, doc: OrderSummary | None) -> OrderSummary | None:
            ...

A handler gets the event and the document as it stands (None if there is
none) and returns the new document, :data:`UNCHANGED`, or :data:`DELETE`.
The worker applies each event to each document at most once: a document
remembers the last version it applied from every source aggregate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.projections._mapping import mapping_for

__all__ = ["DELETE", "UNCHANGED", "Handler", "Outcome", "Projection", "handles"]

V = TypeVar("V", bound=BaseModel)

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")


class _Marker(Enum):
    DELETE = "delete"
    UNCHANGED = "unchanged"


#: Returned by a handler: remove the document (a tombstone keeps its guards).
DELETE = _Marker.DELETE
#: Returned by a handler: leave the document as it is.
UNCHANGED = _Marker.UNCHANGED

#: What a handler returns: the new document, :data:`DELETE`, :data:`UNCHANGED`,
#: or ``None`` (the same as :data:`UNCHANGED`).
Outcome = BaseModel | _Marker | None
DocIdRule = Callable[[Envelope], str]


#: Any method a projection registers (its signature is the projection's business).
H = TypeVar("H", bound=Callable[..., object])

#: The attribute under which a method carries its registrations.
_HANDLES = "__cqrskit_handles__"


def by_aggregate_id(event: Envelope) -> str:
    """The default document id: the id of the aggregate that raised the event."""
    return str(event.aggregate_id)


@dataclass(frozen=True)
class Handler:
    """One registered handler: which event type, which document, which method."""

    event_type: str
    doc_id: DocIdRule | None
    method_name: str


def handles(event_type: str, *, doc_id: DocIdRule | None = None) -> Callable[[H], H]:
    """Decorator: the method handles events of ``event_type`` (e.g. ``"Order.Placed"``).

    ``doc_id`` picks the document from the event; by default the
    projection's :meth:`Projection.doc_id` (the aggregate id). The method
    is returned as it was, with its own type, and registered on it.
    """

    def register(method: H) -> H:
        registered: list[Handler] = list(getattr(method, _HANDLES, []))
        registered.append(Handler(event_type, doc_id, getattr(method, "__name__", repr(method))))
        setattr(method, _HANDLES, registered)
        return method

    return register


@dataclass(frozen=True)
class IndexSettings:
    """How big and how fresh a read model's index is in Elasticsearch.

    Applied when an index is created and when a rebuild's index goes into
    service (a rebuild loads with no replica and no refresh, then restores
    these before the swap).
    """

    #: Primary shards (fixed once an index exists; a rebuild applies a change).
    shards: int = 1
    #: Replicas of each shard.
    replicas: int = 0
    #: Elasticsearch's own periodic refresh (``"1s"``, ``"30s"``, ``"-1"`` for none);
    #: the worker refreshes after its batches anyway, at the projection's ``freshness``.
    refresh_interval: str = "1s"

    def __post_init__(self) -> None:
        if self.shards < 1 or self.replicas < 0:
            raise ValueError(f"shards must be at least 1 and replicas at least 0: {self}")

    def index_body(self, *, loading: bool = False) -> dict[str, Any]:
        """The ``settings`` of an index created with these (loading: no replica, no refresh)."""
        return {
            "number_of_shards": self.shards,
            "number_of_replicas": 0 if loading else self.replicas,
            "refresh_interval": "-1" if loading else self.refresh_interval,
        }


class Projection(Generic[V]):
    """Base class of projections: subclass, set ``name`` and ``view``, add handlers.

    Attributes:
        name: the read model's name; its alias is ``<index_prefix><name>``.
        view: the pydantic model of one document; the mapping derives from it.
        mapping_overrides: field name -> explicit Elasticsearch mapping.
        index_settings: shards, replicas and refresh interval of its index.
        freshness: at most how many seconds an applied event waits to become
            searchable: the worker refreshes the index at this pace while it
            writes, and read-your-writes queries wait for it (never refresh).
    """

    name: ClassVar[str]
    view: ClassVar[type[BaseModel]]
    mapping_overrides: ClassVar[dict[str, dict[str, Any]]] = {}
    index_settings: ClassVar[IndexSettings] = IndexSettings()
    freshness: ClassVar[float] = 1.0
    _handlers: ClassVar[dict[str, list[Handler]]]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is not None and not (isinstance(name, str) and _NAME.fullmatch(name)):
            # The name becomes an index, an alias, a consumer group and a topic.
            raise ValueError(
                f"projection {cls.__qualname__}: name {name!r} must be 1-100 characters of "
                "a-z, 0-9, '_' and '-', starting with a letter or a digit"
            )
        if not (isinstance(cls.freshness, int | float) and 0 < cls.freshness <= 3600):
            raise ValueError(
                f"projection {cls.__qualname__}: freshness must be seconds in (0, 3600], "
                f"not {cls.freshness!r}"
            )
        handlers: dict[str, list[Handler]] = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                for handler in getattr(attribute, "__cqrskit_handles__", ()):
                    handlers.setdefault(handler.event_type, []).append(handler)
        cls._handlers = handlers

    def doc_id(self, event: Envelope) -> str:
        """The document an event updates when its handler names none."""
        return by_aggregate_id(event)

    @classmethod
    def event_types(cls) -> list[str]:
        """Every event type some handler of this projection handles."""
        return sorted(cls._handlers)

    @classmethod
    def aggregate_types(cls) -> list[str]:
        """The aggregate types whose events this projection reads."""
        return sorted({t.rpartition(".")[0] or t for t in cls._handlers})

    @classmethod
    def mapping(cls) -> dict[str, Any]:
        """The Elasticsearch mapping of the read model's index."""
        return mapping_for(cls.view, cls.mapping_overrides)

    def handlers_for(
        self, event: Envelope
    ) -> Iterator[tuple[str, Callable[[Envelope, Any], Outcome]]]:
        """(document id, bound handler) for each handler of the event's type."""
        for handler in self._handlers.get(event.event_type, ()):
            rule = handler.doc_id or self.doc_id
            yield rule(event), getattr(self, handler.method_name)

    @classmethod
    def describe(cls) -> Mapping[str, Any]:
        """Name, view, and handled event types, for ``cqrskit projections list``."""
        return {"name": cls.name, "view": cls.view.__name__, "event_types": cls.event_types()}
