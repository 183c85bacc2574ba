"""The event-sourced application: eventsourcing's Application wired by Settings."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from eventsourcing.application import Application as _LibraryApplication
from eventsourcing.persistence import (
    InfrastructureFactory,
    InterfaceError,
    Mapper,
    OperationalError,
    PersistenceError,
)
from eventsourcing.utils import Environment, get_topic
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier

from cqrskit.adapters import postgres as pg_backend
from cqrskit.errors import PermanentError, ServiceUnavailable
from cqrskit.eventstore._idempotency import IdempotencyRecord
from cqrskit.eventstore._mapper import OrjsonTranscoder, PydanticMapper, Upcasters
from cqrskit.eventstore._memory import MemoryEventRecorder, MemoryEventStoreFactory
from cqrskit.eventstore._postgres import PostgresEventRecorder, PostgresEventStoreFactory
from cqrskit.settings import Settings

__all__ = ["Application", "Persistence"]

Persistence = Literal["postgres", "memory"]


class Application(_LibraryApplication[UUID]):
    """An event-sourced application on cqrskit's event store.

    Subclass it as you would eventsourcing's ``Application``: set ``name``
    (it prefixes the tables), ``snapshotting_intervals`` (snapshot every N
    events, per aggregate class) and ``upcasters``. ``persistence="memory"``
    keeps everything in process memory, for unit tests.
    """

    upcasters: ClassVar[Upcasters] = Upcasters()

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        persistence: Persistence = "postgres",
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings or Settings.load()
        self.persistence = persistence
        try:
            super().__init__(env={**self._environment(), **(env or {})})
        except PersistenceError as exc:
            raise self.unavailable(exc) from exc

    def construct_factory(self, env: Environment) -> InfrastructureFactory:
        """The library's factory; for PostgreSQL, after making sure the schema exists."""
        factory = super().construct_factory(env)
        if isinstance(factory, PostgresEventStoreFactory):
            # The library's pool takes no libpq parameters beyond the login;
            # it opens lazily, so its connections all get these.
            login = factory.datastore.pool.kwargs
            assert isinstance(login, dict), "eventsourcing passes its pool a dict of parameters"
            login.update(pg_backend.connection_options(self.settings))
            if factory.env_create_table():
                self._create_schema(factory)
        return factory

    def _create_schema(self, factory: object) -> None:
        if isinstance(factory, PostgresEventStoreFactory):
            schema = Identifier(self.settings.postgres_schema)
            with factory.datastore.transaction(commit=True) as curs:
                curs.execute(SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(schema))

    def _environment(self) -> dict[str, str]:
        if self.persistence == "memory":
            return {"PERSISTENCE_MODULE": get_topic(MemoryEventStoreFactory)}
        params = conninfo_to_dict(self.settings.postgres_dsn)
        return {
            "PERSISTENCE_MODULE": get_topic(PostgresEventStoreFactory),
            "POSTGRES_DBNAME": str(params.get("dbname", "")),
            "POSTGRES_HOST": str(params.get("host", "localhost")),
            "POSTGRES_PORT": str(params.get("port", 5432)),
            "POSTGRES_USER": str(params.get("user", "")),
            "POSTGRES_PASSWORD": str(params.get("password", "")),
            "POSTGRES_SCHEMA": self.settings.postgres_schema,
            "POSTGRES_CONNECT_TIMEOUT": str(max(1, round(self.settings.connect_timeout))),
            "POSTGRES_POOL_SIZE": str(self.settings.postgres_pool_size),
            "POSTGRES_MAX_OVERFLOW": "0",
            "POSTGRES_LOCK_TIMEOUT": "30",
        }

    def construct_mapper(self) -> Mapper[UUID]:
        """A mapper for pydantic events that applies this app's upcasters."""
        return PydanticMapper(OrjsonTranscoder(), upcasters=type(self).upcasters)

    @property
    def event_recorder(self) -> PostgresEventRecorder | MemoryEventRecorder:
        """The recorder, with cqrskit's additions (idempotency keys)."""
        recorder = self.recorder
        assert isinstance(recorder, PostgresEventRecorder | MemoryEventRecorder)
        return recorder

    def find_idempotency(self, key: str) -> IdempotencyRecord | None:
        """The first outcome recorded for ``key``, if any."""
        return self.event_recorder.select_idempotency(key)

    def create_tables(self) -> None:
        """Create the event store's tables if missing; never drops anything.

        Idempotent: safe to run on every deployment.
        """
        try:
            self._create_schema(self.factory)
            for recorder in (self.recorder, getattr(self.snapshots, "recorder", None)):
                create = getattr(recorder, "create_table", None)
                if create is not None:
                    create()
        except (OperationalError, InterfaceError) as exc:
            raise self.unavailable(exc) from exc
        except PersistenceError as exc:
            raise PermanentError(f"cannot create the event store's tables: {exc}") from exc

    def unavailable(self, exc: Exception) -> ServiceUnavailable:
        """The driver error ``exc`` as a ServiceUnavailable naming the database."""
        return pg_backend.unavailable(self.settings.postgres_address(), pg_backend.first_line(exc))
