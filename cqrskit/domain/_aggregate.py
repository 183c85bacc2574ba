"""Aggregates whose events are frozen pydantic models carrying metadata.

The style is the eventsourcing library's: methods decorated with
:func:`event` become event classes, and calling them records the event and
applies it. Because the base event class here is a pydantic model, every
event's payload is validated when it is raised, and every event carries
:class:`EventMetadata` (event id, schema version, correlation, causation and
trace context) without the aggregate author writing any of it.

Every aggregate and event is stored under a name rather than its module
path, so the code can move: an aggregate's name is its class's qualified
name (``Book``) and an event's is its aggregate's name and its own
(``Book.Lent``), unless given (see :class:`Aggregate`).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, ClassVar, get_type_hints
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate as _LibraryAggregate
from eventsourcing.domain import (
    CanInitAggregate,
    CanMutateAggregate,
    CanSnapshotAggregate,
    MetaAggregate,
)
from eventsourcing.utils import get_topic, resolve_topic
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from cqrskit.domain import _names
from cqrskit.domain._context import current_causation
from cqrskit.errors import DuplicateEventName

__all__ = ["Aggregate", "DomainEvent", "EventMetadata", "Snapshot"]


class EventMetadata(BaseModel):
    """What every stored event carries besides its payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID = Field(default_factory=uuid4)
    schema_version: int = 1
    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    traceparent: str | None = None


class DomainEvent(BaseModel):
    """A frozen, validated domain event.

    ``schema_version`` (a class attribute, default 1) is the version of the
    payload's shape; raise it when the shape changes and register an
    upcaster for the old one (see :class:`cqrskit.Upcasters`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    schema_version: ClassVar[int] = 1
    #: The name the event is stored under (eventsourcing's topic); set on
    #: each event class of an aggregate when the aggregate is defined.
    TOPIC: ClassVar[str]

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    # Filled from the causation context by _fill_metadata before validation.
    metadata: EventMetadata = Field(default_factory=EventMetadata)

    @model_validator(mode="before")
    @classmethod
    def _fill_metadata(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("metadata") is None:
            context = current_causation()
            data = dict(data)
            data["metadata"] = EventMetadata(
                schema_version=cls.schema_version,
                correlation_id=context.correlation_id,
                causation_id=context.causation_id,
                traceparent=context.traceparent,
            )
        return data

    @property
    def event_id(self) -> UUID:
        """The event's own id, unique across the store."""
        return self.metadata.event_id


class Snapshot(DomainEvent, CanSnapshotAggregate[UUID]):
    """The state of an aggregate at one version, stored to shorten replays.

    Attributes are stored as JSON; on load, attributes that the aggregate
    class annotates are validated back into their declared types (pydantic
    models, decimals, dates...), the rest stay as JSON values.
    """

    TOPIC: ClassVar[str] = "cqrskit.Snapshot"

    topic: str
    state: dict[str, Any]

    @classmethod
    def take(cls, aggregate: Any) -> Snapshot:
        """Capture ``aggregate``'s current state."""
        state = {k: v for k, v in vars(aggregate).items() if k not in _NOT_SNAPSHOTTED}
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=cls.create_timestamp(),
            topic=get_topic(type(aggregate)),
            state=TypeAdapter(dict[str, Any]).dump_python(state, mode="json"),
        )

    def mutate(self, _: None) -> Any:
        """Rebuild the aggregate from this snapshot."""
        aggregate_cls = resolve_topic(self.topic)
        adapters = _attribute_adapters(aggregate_cls)
        state = {
            key: adapters[key].validate_python(value) if key in adapters else value
            for key, value in self.state.items()
        }
        state["_id"] = self.originator_id
        state["_version"] = self.originator_version
        state["_pending_events"] = []
        aggregate = object.__new__(aggregate_cls)
        object.__setattr__(aggregate, "__dict__", state)
        return aggregate


_NOT_SNAPSHOTTED = frozenset({"_id", "_version", "_pending_events"})
_names.claim(Snapshot.TOPIC, Snapshot)


@cache
def _attribute_adapters(aggregate_cls: type) -> dict[str, TypeAdapter[Any]]:
    hints = {
        name: hint
        for name, hint in get_type_hints(aggregate_cls).items()
        if not name.startswith("__") and getattr(hint, "__origin__", None) is not ClassVar
    }
    hints["_created_on"] = datetime
    hints["_modified_on"] = datetime
    return {name: TypeAdapter(hint) for name, hint in hints.items()}


class _NamedAggregate(MetaAggregate[Any]):
    """eventsourcing's aggregate metaclass, naming each event class it defines.

    eventsourcing defines an aggregate's event classes while it defines the
    aggregate (from ``@event`` methods, and again for events inherited from
    a base) and, when the aggregate has an explicit ``TOPIC``, requires
    one on each of them: this is the one place that sees every one.
    """

    def _define_event_class(
        cls,  # noqa: N805 - a metaclass's method: its self is the aggregate class
        name: str,
        bases: tuple[type[CanMutateAggregate[Any]], ...],
        apply_method: Any,
        event_topic: str | None = None,
    ) -> type[CanMutateAggregate[Any]]:
        aggregate_name = cls.__dict__.get("TOPIC")
        if not aggregate_name or name == "Event":
            return super()._define_event_class(name, bases, apply_method, event_topic)
        topic = event_topic or _declared_topic(bases) or f"{aggregate_name}.{name}"
        event_class = super()._define_event_class(name, bases, apply_method, topic)
        _names.check_event_name(topic, aggregate_name, event_class)
        # Names are claimed once the aggregate is defined: two events of it
        # that share one must be caught here. (A class defined again under
        # the same attribute, as eventsourcing does, keeps its name.)
        defined = _defining.setdefault(cls, {})
        earlier = defined.setdefault(topic, event_class)
        if earlier.__name__ != name:
            raise DuplicateEventName(topic, _names.path_of(earlier), _names.path_of(event_class))
        return event_class


#: The event names of each aggregate class being defined.
_defining: dict[type[Any], dict[str, type[Any]]] = {}


def _declared_topic(bases: tuple[type[Any], ...]) -> str | None:
    """A name the author gave an event class of this aggregate (``TOPIC = ...``).

    A base event class that already holds its name is a base aggregate's
    event: a subclass aggregate names its own copy after itself.
    """
    for base in bases:
        topic = base.__dict__.get("TOPIC")
        if topic and _names.registered(topic) is not base:
            return str(topic)
    return None


class Aggregate(_LibraryAggregate, metaclass=_NamedAggregate):
    """Base class for event-sourced aggregates.

    Decorate command methods with :func:`cqrskit.event`; the method's
    arguments become the event's validated payload. Annotate attributes at
    class level when they hold more than JSON values, so snapshots restore
    their types.

    Events are stored under a name, not the module path of their class, so
    the code can move. The aggregate's name is its class's qualified name
    unless it sets ``TOPIC = "Book"``; an event's name is its aggregate's
    name and its own (``Book.Lent``) unless given with
    ``@event("Borrowed", topic="Book.Lent")``. Keep the names when renaming
    classes, and every stored event still loads.

    Raises:
        DuplicateEventName: when a class is defined whose name another
            class already holds.
        InvalidEventName: when a name is malformed (an event's must be its
            aggregate's name and one more part).
    """

    #: The name the aggregate is stored under (eventsourcing's topic).
    TOPIC: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        name = cls.__dict__.get("TOPIC") or cls.__qualname__
        _names.check_name(name, cls)
        cls.TOPIC = name
        try:
            super().__init_subclass__(**kwargs)
        finally:
            _defining.pop(cls, None)
        _names.claim(name, cls)
        for attribute, value in vars(cls).items():
            topic = getattr(value, "TOPIC", None)
            is_event = isinstance(value, type) and issubclass(value, CanMutateAggregate)
            if is_event and topic and attribute != "Event":
                _names.claim(topic, value)

    class Event(DomainEvent, CanMutateAggregate[UUID]):
        """Base class of this aggregate's events."""

    class Created(Event, CanInitAggregate[UUID]):
        """Base class of the event that creates an aggregate."""

        originator_topic: str

    Snapshot = Snapshot  # type: ignore[assignment]  # ours is a pydantic model
