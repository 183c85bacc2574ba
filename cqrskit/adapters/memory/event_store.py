"""In-memory event store for unit tests: eventsourcing's POPO recorder plus keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, IntegrityError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder, POPOFactory
from eventsourcing.utils import get_topic

from cqrskit.adapters.memory._errors import unavailable
from cqrskit.errors import ServiceUnavailable
from cqrskit.eventstore._idempotency import IdempotencyRecord
from cqrskit.settings import Settings

__all__ = ["MemoryEventRecorder", "MemoryEventStoreFactory"]


class MemoryEventRecorder(POPOApplicationRecorder):
    """Keeps events and idempotency keys in process memory, atomically."""

    def __init__(self) -> None:
        super().__init__()
        self._keys: dict[str, IdempotencyRecord] = {}

    def _insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        record: IdempotencyRecord | None = kwargs.get("idempotency")
        with self._database_lock:
            if record is not None and record.key in self._keys:
                raise IntegrityError(f"idempotency key {record.key!r} is already recorded")
            ids = super()._insert_events(stored_events, **kwargs)
            if record is not None:
                position = max(ids) if ids else None
                self._keys[record.key] = IdempotencyRecord(
                    **{**record.__dict__, "position": position}
                )
            return ids

    def select_idempotency(self, key: str) -> IdempotencyRecord | None:
        """The recorded outcome for ``key``, or None if it was never used."""
        with self._database_lock:
            return self._keys.get(key)


class MemoryEventStoreFactory(POPOFactory):
    """eventsourcing's POPO factory, building :class:`MemoryEventRecorder`."""

    def application_recorder(self) -> ApplicationRecorder:
        """A fresh in-memory recorder."""
        return MemoryEventRecorder()

    @classmethod
    def environment(cls, settings: Settings) -> dict[str, str]:
        """Selects this factory; memory needs nothing else."""
        return {"PERSISTENCE_MODULE": get_topic(cls)}

    @classmethod
    def unavailable(cls, settings: Settings, exc: Exception) -> ServiceUnavailable:
        """Memory is never away: a storage error here is a bug, said in the tree's terms."""
        return unavailable("process memory", str(exc) or type(exc).__name__)

    def prepare(self, settings: Settings) -> None:
        """Nothing to prepare: memory has no tables."""
