"""The SagaStore contract: one behaviour, in memory and in PostgreSQL.

:class:`SagaStoreContract` holds the behaviour the saga runner relies on
(versions guarded by ``SagaConflict``, each event handled once, positions
that never go back, one pending plan per instance, durable deadlines); each
implementation subclasses it with a ``store`` fixture, as eventsourcing's
``ApplicationRecorderTestCase`` is subclassed per recorder.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cqrskit import Settings
from cqrskit.adapters.postgres.saga_store import PostgresSagaStore
from cqrskit.errors import SagaConflict
from cqrskit.sagas import HistoryEntry, PlannedReaction, SagaStore, StepRecord
from cqrskit.testing import MemorySagaStore
from tests.integration.conftest import (
    empty_schema_settings,
    postgres_up,
    schema_settings,
    settings,
    unique_name,
)

__all__ = ["empty_schema_settings", "postgres_up", "schema_settings", "settings", "unique_name"]

SAGA = "checkout"


def step(instance_id: str = "order-1", expected_version: int = 0, **changes: Any) -> StepRecord:
    fields: dict[str, Any] = {
        "saga": SAGA,
        "instance_id": instance_id,
        "expected_version": expected_version,
        "status": "running",
        "state": {"step": f"v{expected_version + 1}"},
        "compensations": [],
        "history": [HistoryEntry(datetime.now(UTC), "event", f"E{expected_version}", {})],
    }
    return StepRecord(**{**fields, **changes})


def planned(
    instance_id: str = "order-1", expected_version: int = 0, **changes: Any
) -> PlannedReaction:
    fields: dict[str, Any] = {
        "saga": SAGA,
        "instance_id": instance_id,
        "expected_version": expected_version,
        "kind": "event",
        "trigger": "Order.Placed",
        "trigger_key": "event-1",
        "status": "running",
        "reason": "",
        "state": {"step": "placed"},
        "compensations": [],
        "commands": [{"type": "Reserve", "payload": {}, "key": "k:0", "compensation": None}],
        "deadlines": {"payment": 60.0},
        "cancelled": [],
        "event_id": "event-1",
        "stream": "shop.Order/0",
        "next_offset": 4,
    }
    return PlannedReaction(**{**fields, **changes})


class SagaStoreContract:
    """What every SagaStore does; subclasses provide the ``store`` fixture."""

    def test_an_unknown_instance_loads_as_none(self, store: SagaStore) -> None:
        assert store.load(SAGA, "nobody") is None
        assert store.pending(SAGA, "nobody") is None
        assert store.history(SAGA, "nobody") == []
        assert store.deadlines(SAGA, "nobody") == {}
        assert store.positions(SAGA) == {}

    def test_a_recorded_step_starts_the_instance_at_version_one(self, store: SagaStore) -> None:
        compensations = [{"type": "Release", "payload": {"hold": "h"}}]
        assert store.record(step(compensations=compensations))
        instance = store.load(SAGA, "order-1")
        assert instance is not None
        assert (instance.saga, instance.instance_id) == (SAGA, "order-1")
        assert (instance.status, instance.version) == ("running", 1)
        assert instance.state == {"step": "v1"}
        assert instance.compensations == compensations
        assert instance.started_at <= instance.updated_at

    def test_each_step_moves_the_version_and_appends_history(self, store: SagaStore) -> None:
        store.record(step())
        store.record(step(expected_version=1, status="done"))
        instance = store.load(SAGA, "order-1")
        assert instance is not None
        assert (instance.status, instance.version, instance.state) == ("done", 2, {"step": "v2"})
        assert [h.trigger for h in store.history(SAGA, "order-1")] == ["E0", "E1"]

    def test_a_step_against_a_version_that_moved_on_is_a_conflict(self, store: SagaStore) -> None:
        store.record(step())
        with pytest.raises(SagaConflict):
            store.record(step(expected_version=0))  # a second start of the same instance
        with pytest.raises(SagaConflict):
            store.record(step(expected_version=5))
        instance = store.load(SAGA, "order-1")
        assert instance is not None
        assert instance.version == 1
        assert len(store.history(SAGA, "order-1")) == 1

    def test_an_event_is_handled_once(self, store: SagaStore) -> None:
        assert not store.handled(SAGA, "event-1")
        assert store.record(step(event_id="event-1"))
        assert store.handled(SAGA, "event-1")
        assert not store.handled("other-saga", "event-1")
        assert not store.record(step(expected_version=1, event_id="event-1"))
        instance = store.load(SAGA, "order-1")
        assert instance is not None
        assert instance.version == 1
        assert len(store.history(SAGA, "order-1")) == 1

    def test_positions_are_kept_per_stream_and_never_go_back(self, store: SagaStore) -> None:
        store.record(step(event_id="e1", stream="shop.Order/0", next_offset=5))
        store.record_position(SAGA, "shop.Order/1", 3)
        store.record_position(SAGA, "shop.Order/0", 2)  # an older one, seen again
        assert store.positions(SAGA) == {"shop.Order/0": 5, "shop.Order/1": 3}
        store.record_position(SAGA, "shop.Order/1", 9)
        assert store.positions(SAGA)["shop.Order/1"] == 9
        assert store.positions("other-saga") == {}

    def test_a_plan_is_pending_until_its_step_is_recorded(self, store: SagaStore) -> None:
        plan = planned()
        assert store.plan(plan) == plan
        assert store.pending(SAGA, "order-1") == plan
        store.record(step(event_id="event-1"))
        assert store.pending(SAGA, "order-1") is None

    def test_the_first_plan_of_a_version_wins(self, store: SagaStore) -> None:
        first = planned()
        store.plan(first)
        assert store.plan(planned(trigger_key="deadline:payment:0", event_id=None)) == first
        assert store.pending(SAGA, "order-1") == first

    def test_a_plan_against_a_version_that_moved_on_is_a_conflict(self, store: SagaStore) -> None:
        store.record(step())
        with pytest.raises(SagaConflict):
            store.plan(planned(expected_version=0))
        assert store.pending(SAGA, "order-1") is None

    def test_recording_a_handled_event_again_drops_its_pending_plan(self, store: SagaStore) -> None:
        store.record(step(event_id="event-1"))
        store.plan(planned(expected_version=1, event_id="event-1"))
        assert not store.record(step(expected_version=1, event_id="event-1"))
        assert store.pending(SAGA, "order-1") is None

    def test_deadlines_fall_due_and_are_cancelled(self, store: SagaStore) -> None:
        store.record(step(deadlines={"payment": 0.0, "shipping": 3600.0}))
        assert set(store.deadlines(SAGA, "order-1")) == {"payment", "shipping"}
        assert store.due(SAGA) == [("order-1", "payment")]
        store.record(step(expected_version=1, cancelled=frozenset({"payment"})))
        assert set(store.deadlines(SAGA, "order-1")) == {"shipping"}
        assert store.due(SAGA) == []
        store.record(step(expected_version=2, status="done", cancel_all=True))
        assert store.deadlines(SAGA, "order-1") == {}

    def test_a_deadline_set_again_moves(self, store: SagaStore) -> None:
        store.record(step(deadlines={"payment": 3600.0}))
        store.record(step(expected_version=1, deadlines={"payment": 0.0}))
        assert store.due(SAGA) == [("order-1", "payment")]
        assert store.due("other-saga") == []

    def test_instances_are_listed_newest_first_by_status(self, store: SagaStore) -> None:
        store.record(step("order-1"))
        store.record(step("order-2", status="failed"))
        store.record(step("order-3"))
        assert [i.instance_id for i in store.instances(SAGA)] == ["order-3", "order-2", "order-1"]
        assert [i.instance_id for i in store.instances(SAGA, "running")] == ["order-3", "order-1"]
        assert [i.instance_id for i in store.instances(SAGA, limit=1)] == ["order-3"]
        assert store.instances("other-saga") == []


class TestMemorySagaStore(SagaStoreContract):
    @pytest.fixture
    def store(self) -> SagaStore:
        return MemorySagaStore()


@pytest.mark.integration
class TestPostgresSagaStore(SagaStoreContract):
    @pytest.fixture
    def store(self, schema_settings: Settings) -> SagaStore:
        return PostgresSagaStore(schema_settings, "shop")
