"""Between domain events (pydantic models) and stored events (JSON bytes).

The stored state of an event is the JSON of its fields except the
originator id and version (which have columns of their own): its payload,
``timestamp`` and ``metadata``. JSON that any consumer can read, with no
library-specific type tags, is what the relay later puts on the wire.

The topic column holds the event's stored name (``Book.Lent``), and a
created event's ``originator_topic`` its aggregate's (``Book``). Rows
written before names hold module paths (``examples.library.domain:Book.Lent``)
in both; they are read through the application's ``old_names``, else the
module while it imports, else the class registered under the path's
qualified name (docs/decisions/0021-stored-event-names.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import orjson
from eventsourcing.domain import CanInitAggregate, CanSnapshotAggregate, DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder, Transcoding
from eventsourcing.utils import get_topic
from pydantic import BaseModel

from cqrskit.domain import _names
from cqrskit.errors import InvalidEventName, PermanentError

__all__ = ["OrjsonTranscoder", "PydanticMapper", "Upcaster", "Upcasters"]

#: Turns the stored state of one schema version into the next one's.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Upcasters:
    """Registered upcasters, per event name and schema version.

    An event class whose payload changed shape raises its ``schema_version``;
    events stored under an older version are upcast one version at a time
    when they are read::

        upcasters = Upcasters()

        @upcasters.register(Order.Placed, from_version=1)
        def add_currency(state: dict[str, Any]) -> dict[str, Any]:
            return {**state, "currency": "EUR"}

    An upcaster receives the stored state (payload fields, ``timestamp``,
    ``metadata``) and returns the state of the next version. Upcasters are
    keyed by the class's stored name, so they also lift the events stored
    under its old names.
    """

    def __init__(self) -> None:
        self._by_topic: dict[tuple[str, int], Upcaster] = {}

    def register(
        self, event_class: type[Any], *, from_version: int
    ) -> Callable[[Upcaster], Upcaster]:
        """Decorator: register ``func`` to lift ``event_class`` from ``from_version``."""

        def decorate(func: Upcaster) -> Upcaster:
            key = (get_topic(event_class), from_version)
            if key in self._by_topic:
                raise ValueError(f"an upcaster for {key[0]} v{from_version} is already registered")
            self._by_topic[key] = func
            return func

        return decorate

    def upcast(self, topic: str, state: dict[str, Any], to_version: int) -> dict[str, Any]:
        """Lift ``state`` of the event named ``topic`` to ``to_version``; unchanged if it is there.

        Raises:
            PermanentError: a step from some version has no upcaster.
        """
        metadata = state.get("metadata") or {}
        version = int(metadata.get("schema_version", 1))
        while version < to_version:
            try:
                step = self._by_topic[(topic, version)]
            except KeyError:
                raise PermanentError(
                    f"event {topic} is stored at schema version {version} but the code "
                    f"expects version {to_version}, and no upcaster from version {version} "
                    "is registered"
                ) from None
            state = step(state)
            version += 1
            state["metadata"] = {**metadata, "schema_version": version}
        return state


class OrjsonTranscoder(Transcoder):
    """JSON bytes with orjson; pydantic does the typing, so no transcodings."""

    def encode(self, obj: Any) -> bytes:
        """Serialise plain JSON values."""
        return orjson.dumps(obj)

    def decode(self, data: bytes) -> Any:
        """Parse JSON bytes."""
        return orjson.loads(data)

    def register(self, transcoding: Transcoding) -> None:
        """Refused: declare value objects as pydantic models instead."""
        raise TypeError("cqrskit events are pydantic models; declare value objects as models")


_COLUMNS = {"originator_id", "originator_version"}


def _aggregate_field(cls: type[Any]) -> str:
    """The field of a created event or a snapshot that names its aggregate's class."""
    if issubclass(cls, CanInitAggregate):
        return "originator_topic"
    if issubclass(cls, CanSnapshotAggregate):
        return "topic"
    return ""


class PydanticMapper(Mapper[Any]):
    """Maps pydantic domain events to stored events, upcasting old ones.

    ``old_names`` maps names that rows were stored under (module paths, or
    names given up) to the class that reads them now.

    Raises:
        InvalidEventName: ``old_names`` maps a name that another class holds.
    """

    def __init__(
        self,
        transcoder: Transcoder,
        upcasters: Upcasters | None = None,
        old_names: Mapping[str, type[Any]] | None = None,
        **kwargs: Any,
    ):
        super().__init__(transcoder, **kwargs)
        self.upcasters = upcasters or Upcasters()
        self.old_names = dict(old_names or {})
        for name, cls in self.old_names.items():
            holder = _names.registered(name)
            if holder not in (None, cls):
                raise InvalidEventName(
                    f"old_names maps {name!r} to {_names.path_of(cls)}, but {name!r} is the "
                    f"name of {_names.path_of(holder)}: map only names that no class holds now"
                )

    def to_stored_event(self, domain_event: DomainEventProtocol[Any]) -> StoredEvent:
        """Serialise the event's fields (not id and version) to JSON bytes."""
        model = cast(BaseModel, domain_event)
        state = model.__pydantic_serializer__.to_json(model, exclude=_COLUMNS)
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=get_topic(type(domain_event)),
            state=state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[Any]:
        """Parse, upcast to the class's schema version, and validate.

        Raises:
            UnknownEventName: no class answers to the stored name.
            PermanentError: an older schema version has no upcaster.
        """
        data = stored_event.state
        if self.cipher:
            data = self.cipher.decrypt(data)
        if self.compressor:
            data = self.compressor.decompress(data)
        state: dict[str, Any] = self.transcoder.decode(data)
        aggregate_id = stored_event.originator_id
        cls = _names.resolve(stored_event.topic, aggregate_id, self.old_names)
        state = self.upcasters.upcast(get_topic(cls), state, getattr(cls, "schema_version", 1))
        field = _aggregate_field(cls)
        if field in state:
            # Stored as a module path before names: eventsourcing finds the
            # aggregate class by this field, so it gets the current name.
            aggregate_class = _names.resolve(state[field], aggregate_id, self.old_names)
            state[field] = get_topic(aggregate_class)
        state["originator_id"] = stored_event.originator_id
        state["originator_version"] = stored_event.originator_version
        return cast(DomainEventProtocol[Any], cls.model_validate(state))
