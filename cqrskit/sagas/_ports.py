"""The port of the process managers' storage: :class:`SagaStore`.

Every reaction is recorded in one transaction: the instance's new state
(guarded by its version), the history entry, the deadlines it set or
cancelled, the id of the event it handled (unique: a second delivery finds
it and records nothing) and the Kafka position after that event.
Implementations: ``cqrskit.adapters.postgres.saga_store.PostgresSagaStore``
and, for tests, ``cqrskit.adapters.memory.saga_store.MemorySagaStore``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from cqrskit.sagas._records import (
    HistoryEntry,
    PlannedReaction,
    SagaInstance,
    Status,
    StepRecord,
)

__all__ = ["SagaStore"]


class SagaStore(Protocol):
    """Storage of process-manager instances."""

    def load(self, saga: str, instance_id: str) -> SagaInstance | None:
        """The instance, or None."""
        ...

    def handled(self, saga: str, event_id: str) -> bool:
        """Whether the saga already recorded its reaction to ``event_id``."""
        ...

    def record(self, step: StepRecord) -> bool:
        """Write ``step`` atomically, and drop the instance's pending plan;
        False if its event was already handled.

        Raises:
            SagaConflict: the instance's version moved since it was loaded.
        """
        ...

    def plan(self, planned: PlannedReaction) -> PlannedReaction:
        """Record ``planned`` as the instance's pending reaction, unless one is
        pending already; return the pending one (``planned`` or the other).

        Raises:
            SagaConflict: the instance's version is no longer ``expected_version``.
        """
        ...

    def pending(self, saga: str, instance_id: str) -> PlannedReaction | None:
        """The instance's reaction planned and not yet recorded, if any."""
        ...

    def record_position(self, saga: str, stream: str, next_offset: int) -> None:
        """Remember a position reached without a reaction (an ignored event)."""
        ...

    def positions(self, saga: str) -> dict[str, int]:
        """Next Kafka offset per stream (``topic/partition``)."""
        ...

    def due(self, saga: str, limit: int = 100) -> list[tuple[str, str]]:
        """(instance id, deadline name) of deadlines due now."""
        ...

    def instances(
        self, saga: str, status: Status | None = None, limit: int = 1000
    ) -> list[SagaInstance]:
        """Instances, newest first."""
        ...

    def history(self, saga: str, instance_id: str) -> list[HistoryEntry]:
        """An instance's history, oldest first."""
        ...

    def deadlines(self, saga: str, instance_id: str) -> dict[str, datetime]:
        """An instance's pending deadlines."""
        ...
