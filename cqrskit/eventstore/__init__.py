"""The event store: PostgreSQL (or memory) via eventsourcing, with idempotency keys.

The events table doubles as the transactional outbox: see
docs/decisions/0001-outbox.md.
"""

from cqrskit.eventstore._application import Application, Persistence
from cqrskit.eventstore._idempotency import IdempotencyRecord
from cqrskit.eventstore._mapper import OrjsonTranscoder, PydanticMapper, Upcaster, Upcasters
from cqrskit.eventstore._memory import MemoryEventRecorder, MemoryEventStoreFactory
from cqrskit.eventstore._postgres import PostgresEventRecorder, PostgresEventStoreFactory
from cqrskit.eventstore._reader import read_envelopes, store_head

__all__ = [
    "Application",
    "IdempotencyRecord",
    "MemoryEventRecorder",
    "MemoryEventStoreFactory",
    "OrjsonTranscoder",
    "Persistence",
    "PostgresEventRecorder",
    "PostgresEventStoreFactory",
    "PydanticMapper",
    "Upcaster",
    "Upcasters",
    "read_envelopes",
    "store_head",
]
