"""The event-sourced application: eventsourcing's Application wired by Settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from uuid import UUID

from eventsourcing.application import Application as _LibraryApplication
from eventsourcing.persistence import (
    InfrastructureFactory,
    InterfaceError,
    Mapper,
    OperationalError,
    PersistenceError,
)
from eventsourcing.utils import Environment, resolve_topic

from cqrskit.errors import PermanentError, ServiceUnavailable
from cqrskit.eventstore._idempotency import IdempotencyRecord
from cqrskit.eventstore._mapper import OrjsonTranscoder, PydanticMapper, Upcasters
from cqrskit.eventstore._ports import EventRecorder, EventStoreFactory
from cqrskit.settings import Settings

__all__ = ["Application", "Persistence"]

Persistence = Literal["postgres", "memory"]

#: The adapter of each persistence, by eventsourcing topic: the library
#: imports it when the application starts, so this stage never does.
FACTORIES: dict[str, str] = {
    "postgres": "cqrskit.adapters.postgres.event_store:PostgresEventStoreFactory",
    "memory": "cqrskit.adapters.memory.event_store:MemoryEventStoreFactory",
}


class Application(_LibraryApplication[UUID]):
    """An event-sourced application on cqrskit's event store.

    Subclass it as you would eventsourcing's ``Application``: set ``name``
    (it prefixes the tables), ``snapshotting_intervals`` (snapshot every N
    events, per aggregate class), ``upcasters`` and ``old_names``.
    ``persistence="memory"`` keeps everything in process memory, for unit
    tests.
    """

    upcasters: ClassVar[Upcasters] = Upcasters()
    #: Names that events and aggregates were stored under and that no class
    #: holds now (module paths from before stored names, names given up),
    #: each mapped to the class that reads them:
    #: ``{"examples.library.domain:Book.Lent": Book.Lent}``.
    old_names: ClassVar[Mapping[str, type[Any]]] = {}

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        persistence: Persistence = "postgres",
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings or Settings.load()
        self.persistence = persistence
        store = resolve_topic(FACTORIES[persistence])
        assert isinstance(store, type)
        assert issubclass(store, EventStoreFactory)
        self._store: type[EventStoreFactory] = store
        try:
            super().__init__(env={**store.environment(self.settings), **(env or {})})
        except PersistenceError as exc:
            raise self.unavailable(exc) from exc

    def construct_factory(self, env: Environment) -> InfrastructureFactory:
        """The library's factory; for PostgreSQL, after making sure the schema exists."""
        factory = super().construct_factory(env)
        if isinstance(factory, EventStoreFactory):
            factory.prepare(self.settings)
        return factory

    def construct_mapper(self) -> Mapper[UUID]:
        """A mapper for pydantic events that applies this app's upcasters and old names."""
        return PydanticMapper(
            OrjsonTranscoder(), upcasters=type(self).upcasters, old_names=type(self).old_names
        )

    @property
    def event_recorder(self) -> EventRecorder:
        """The recorder, with cqrskit's additions (idempotency keys)."""
        recorder = self.recorder
        assert isinstance(recorder, EventRecorder)
        return recorder

    def find_idempotency(self, key: str) -> IdempotencyRecord | None:
        """The first outcome recorded for ``key``, if any."""
        return self.event_recorder.select_idempotency(key)

    def create_tables(self) -> None:
        """Create the event store's tables if missing; never drops anything.

        Idempotent: safe to run on every deployment.
        """
        try:
            if isinstance(self.factory, EventStoreFactory):
                self.factory.create_schema()
            for recorder in (self.recorder, getattr(self.snapshots, "recorder", None)):
                create = getattr(recorder, "create_table", None)
                if create is not None:
                    create()
        except (OperationalError, InterfaceError) as exc:
            raise self.unavailable(exc) from exc
        except PersistenceError as exc:
            raise PermanentError(f"cannot create the event store's tables: {exc}") from exc

    def unavailable(self, exc: Exception) -> ServiceUnavailable:
        """The driver error ``exc`` in cqrskit's tree: for PostgreSQL, a
        ServiceUnavailable naming the database."""
        return self._store.unavailable(self.settings, exc)
