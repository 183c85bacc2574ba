"""Process-manager instances in memory: the ``SagaStore`` contract without services.

For tests (``cqrskit.testing.SagaScenario`` runs on it) and for trying a
process manager out; nothing survives the process.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from cqrskit.errors import SagaConflict
from cqrskit.sagas import HistoryEntry, PlannedReaction, SagaInstance, StepRecord
from cqrskit.sagas._records import Status

__all__ = ["MemorySagaStore"]


class MemorySagaStore:
    """The same contract in memory, for tests without services."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instances: dict[tuple[str, str], SagaInstance] = {}
        self._history: dict[tuple[str, str], list[HistoryEntry]] = {}
        self._deadlines: dict[tuple[str, str], dict[str, datetime]] = {}
        self._handled: set[tuple[str, str]] = set()
        self._positions: dict[tuple[str, str], int] = {}
        self._pending: dict[tuple[str, str], PlannedReaction] = {}

    def load(self, saga: str, instance_id: str) -> SagaInstance | None:
        with self._lock:
            found = self._instances.get((saga, instance_id))
            return None if found is None else SagaInstance(**vars(found))

    def handled(self, saga: str, event_id: str) -> bool:
        return (saga, event_id) in self._handled

    def record(self, step: StepRecord) -> bool:
        key = (step.saga, step.instance_id)
        now = datetime.now(UTC)
        with self._lock:
            if step.event_id is not None and (step.saga, step.event_id) in self._handled:
                pending = self._pending.get(key)
                if pending is not None and pending.event_id == step.event_id:
                    del self._pending[key]
                return False
            current = self._instances.get(key)
            if (current.version if current else 0) != step.expected_version:
                raise SagaConflict(f"saga {step.saga} instance {step.instance_id} moved on")
            self._instances[key] = SagaInstance(
                step.saga,
                step.instance_id,
                step.status,
                step.state,
                step.compensations,
                step.expected_version + 1,
                current.started_at if current else now,
                now,
            )
            self._history.setdefault(key, []).extend(step.history)
            deadlines = self._deadlines.setdefault(key, {})
            if step.cancel_all:
                deadlines.clear()
            for name in step.cancelled:
                deadlines.pop(name, None)
            for name, seconds in step.deadlines.items():
                deadlines[name] = now + timedelta(seconds=seconds)
            self._pending.pop(key, None)
            if step.event_id is not None:
                self._handled.add((step.saga, step.event_id))
            if step.stream is not None and step.next_offset is not None:
                position = (step.saga, step.stream)
                self._positions[position] = max(self._positions.get(position, 0), step.next_offset)
            return True

    def plan(self, planned: PlannedReaction) -> PlannedReaction:
        key = (planned.saga, planned.instance_id)
        with self._lock:
            current = self._instances.get(key)
            if (current.version if current else 0) != planned.expected_version:
                raise SagaConflict(f"saga {planned.saga} instance {planned.instance_id} moved on")
            return self._pending.setdefault(key, planned)

    def pending(self, saga: str, instance_id: str) -> PlannedReaction | None:
        with self._lock:
            return self._pending.get((saga, instance_id))

    def record_position(self, saga: str, stream: str, next_offset: int) -> None:
        with self._lock:
            self._positions[(saga, stream)] = max(
                self._positions.get((saga, stream), 0), next_offset
            )

    def positions(self, saga: str) -> dict[str, int]:
        return {stream: n for (s, stream), n in self._positions.items() if s == saga}

    def due(self, saga: str, limit: int = 100) -> list[tuple[str, str]]:
        now = datetime.now(UTC)
        with self._lock:
            found = [
                (instance, name)
                for (s, instance), deadlines in self._deadlines.items()
                if s == saga
                for name, due_at in deadlines.items()
                if due_at <= now
            ]
        return found[:limit]

    def instances(
        self, saga: str, status: Status | None = None, limit: int = 1000
    ) -> list[SagaInstance]:
        found = [
            i
            for (s, _), i in self._instances.items()
            if s == saga and (status is None or i.status == status)
        ]
        return sorted(found, key=lambda i: i.started_at, reverse=True)[:limit]

    def history(self, saga: str, instance_id: str) -> list[HistoryEntry]:
        return list(self._history.get((saga, instance_id), []))

    def deadlines(self, saga: str, instance_id: str) -> dict[str, datetime]:
        return dict(self._deadlines.get((saga, instance_id), {}))
