"""The event store: PostgreSQL (or memory) via eventsourcing, with idempotency keys.

The events table doubles as the transactional outbox: see
docs/decisions/0001-outbox.md. The recorders themselves are adapters:
``cqrskit.adapters.postgres.event_store`` (``PostgresEventRecorder``, the
group commit) and ``cqrskit.adapters.memory.event_store``; the keyset
reader of the whole store is ``cqrskit.adapters.postgres.reader``.
"""

from cqrskit.eventstore._application import Application, Persistence
from cqrskit.eventstore._idempotency import IdempotencyRecord
from cqrskit.eventstore._mapper import OrjsonTranscoder, PydanticMapper, Upcaster, Upcasters
from cqrskit.eventstore._ports import EventRecorder, EventStoreFactory

__all__ = [
    "Application",
    "EventRecorder",
    "EventStoreFactory",
    "IdempotencyRecord",
    "OrjsonTranscoder",
    "Persistence",
    "PydanticMapper",
    "Upcaster",
    "Upcasters",
]
