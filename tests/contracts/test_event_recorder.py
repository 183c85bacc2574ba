"""The event store's contract: eventsourcing's own recorder conformance suite.

The library ships ``ApplicationRecorderTestCase`` for every recorder of
its ``ApplicationRecorder`` contract. PostgreSQL's recorder runs it on the
real server in tests/integration/eventstore/test_recorder_conformance.py;
here it runs on the in-memory recorder, with cqrskit's idempotency keys on top.
"""

from __future__ import annotations

import uuid

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.tests.persistence import ApplicationRecorderTestCase

from cqrskit.adapters.memory.event_store import MemoryEventRecorder
from cqrskit.eventstore import EventRecorder, IdempotencyRecord


class TestMemoryEventRecorderIsAnApplicationRecorder(
    ApplicationRecorderTestCase[MemoryEventRecorder]
):
    def create_recorder(self) -> MemoryEventRecorder:
        return MemoryEventRecorder()


def _event() -> StoredEvent:
    return StoredEvent(originator_id=uuid.uuid4(), originator_version=1, topic="t", state=b"{}")


def test_an_idempotency_key_is_recorded_with_its_events_and_only_once() -> None:
    recorder = MemoryEventRecorder()
    assert isinstance(recorder, EventRecorder)
    event = _event()
    record = IdempotencyRecord(
        key="k",
        request_hash="h",
        command_type="C",
        aggregate_id=uuid.UUID(str(event.originator_id)),
        aggregate_version=1,
        position=None,
    )
    recorder.insert_events([event], idempotency=record)
    found = recorder.select_idempotency("k")
    assert found is not None
    assert found.position == 1
    with pytest.raises(IntegrityError):
        recorder.insert_events([_event()], idempotency=record)
    assert len(recorder.select_notifications(start=1, limit=10)) == 1
