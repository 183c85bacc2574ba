"""The RebuildStateStore port's contract: a rebuild's progress, kept so that it resumes.

Runs against the in-memory store (no services) and the Elasticsearch one
(real cluster, a fresh index per test).
"""

from __future__ import annotations

import pytest

from cqrskit.adapters.elasticsearch.rebuild_state import ElasticsearchRebuildStates
from cqrskit.adapters.memory.rebuild_state import MemoryRebuildStates
from cqrskit.projections._ports import RebuildStateStore


@pytest.fixture(params=["memory", pytest.param("elasticsearch", marks=pytest.mark.integration)])
def states(request: pytest.FixtureRequest) -> RebuildStateStore:
    if request.param == "memory":
        store: RebuildStateStore = MemoryRebuildStates()
    else:
        es, prefix = request.getfixturevalue("es"), request.getfixturevalue("es_prefix")
        store = ElasticsearchRebuildStates(es, "test", f"{prefix}rebuilds")
    store.ensure()
    return store


STATE = {
    "projection": "orders",
    "target": "orders-v2",
    "phase": "catching-up",
    "previous": "orders-v1",
    "head": 120,
    "start_offsets": {"shop.orders|0": 4, "shop.orders|1": 7},
    "failures": 0,
}


def test_nothing_recorded_reads_as_none(states: RebuildStateStore) -> None:
    assert states.read("orders") is None


def test_saved_progress_reads_back_whole(states: RebuildStateStore) -> None:
    states.save("orders", STATE)
    assert states.read("orders") == STATE


def test_saving_replaces_the_progress_of_that_projection_only(states: RebuildStateStore) -> None:
    states.save("orders", STATE)
    states.save("stock", {**STATE, "projection": "stock"})
    states.save("orders", {**STATE, "phase": "done"})
    assert states.read("orders") == {**STATE, "phase": "done"}
    assert states.read("stock") == {**STATE, "projection": "stock"}


def test_ensuring_twice_keeps_what_was_saved(states: RebuildStateStore) -> None:
    states.save("orders", STATE)
    states.ensure()
    assert states.read("orders") == STATE
