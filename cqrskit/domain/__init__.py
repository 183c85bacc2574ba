"""The domain layer: aggregates and events, with no I/O.

Nothing here imports a database, broker or search driver.
"""

from eventsourcing.domain import event

from cqrskit.domain._aggregate import Aggregate, DomainEvent, EventMetadata, Snapshot
from cqrskit.domain._context import CausationContext, causation, current_causation

__all__ = [
    "Aggregate",
    "CausationContext",
    "DomainEvent",
    "EventMetadata",
    "Snapshot",
    "causation",
    "current_causation",
    "event",
]
