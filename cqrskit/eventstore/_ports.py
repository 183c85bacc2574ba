"""What the event-sourced application needs of a storage technology.

eventsourcing builds its recorders through an ``InfrastructureFactory``
named by topic (``PERSISTENCE_MODULE``), so the application names its
adapter (``cqrskit.adapters.postgres.event_store`` or
``cqrskit.adapters.memory.event_store``) without importing it; these ports
are what it then calls on the factory and the recorder it got.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cqrskit.errors import ServiceUnavailable
from cqrskit.eventstore._idempotency import IdempotencyRecord
from cqrskit.settings import Settings

__all__ = ["EventRecorder", "EventStoreFactory"]


@runtime_checkable
class EventStoreFactory(Protocol):
    """An eventsourcing infrastructure factory that knows cqrskit's settings."""

    @classmethod
    def environment(cls, settings: Settings) -> dict[str, str]:
        """The eventsourcing environment that selects and configures this factory."""
        ...

    @classmethod
    def unavailable(cls, settings: Settings, exc: Exception) -> ServiceUnavailable:
        """The storage error ``exc`` (eventsourcing's, from the driver's) in cqrskit's tree."""
        ...

    def prepare(self, settings: Settings) -> None:
        """Finish what the environment cannot say (connection options); check the tables.

        Raises:
            SchemaNotReady: the storage's tables are missing or not up to date.
        """
        ...


@runtime_checkable
class EventRecorder(Protocol):
    """eventsourcing's application recorder plus cqrskit's idempotency keys."""

    def select_idempotency(self, key: str) -> IdempotencyRecord | None:
        """The recorded outcome for ``key``, or None if it was never used."""
        ...
