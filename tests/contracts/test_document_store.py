"""The DocumentStore port's contract: guarded loads and writes of a projection's documents.

Each behaviour runs against the in-memory reference fold's store and the
in-memory read model (no services), and the Elasticsearch one (real
cluster, a fresh index prefix per test).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cqrskit.adapters.memory.read_model import MemoryIndexedReadModel
from cqrskit.projections import MemoryReadModel
from cqrskit.projections._ports import DocState, DocumentStore
from projections.customers import CustomerOrders


@pytest.fixture(
    params=[
        "memory",
        "memory-indexed",
        pytest.param("elasticsearch", marks=pytest.mark.integration),
    ]
)
def store(request: pytest.FixtureRequest) -> Iterator[DocumentStore]:
    if request.param == "memory":
        yield MemoryReadModel()
        return
    if request.param == "memory-indexed":
        indexed = MemoryIndexedReadModel("customers", CustomerOrders)
        indexed.ensure()
        yield indexed
        return
    yield request.getfixturevalue("es_read_model")


def doc(customer: str, placed: int, position: int) -> DocState:
    return DocState(
        customer,
        view=CustomerOrders(customer_id=customer, orders_placed=placed),
        sources={"shop.customers|0": position},
        position=position,
        dirty=True,
    )


def test_a_missing_document_loads_as_an_empty_state(store: DocumentStore) -> None:
    (state,) = store.load(["nobody"]).values()
    assert (state.doc_id, state.view, state.sources, state.position, state.deleted) == (
        "nobody",
        None,
        {},
        0,
        False,
    )


def test_a_written_document_loads_back_with_its_guards(store: DocumentStore) -> None:
    written = store.write([doc("c-1", 3, 30)])
    assert (written.conflicts, written.refused) == (set(), {})
    state = store.load(["c-1"])["c-1"]
    assert state.view == CustomerOrders(customer_id="c-1", orders_placed=3)
    assert state.sources == {"shop.customers|0": 30}
    assert state.position == 30
    assert state.applied("shop.customers|0", 30)
    assert not state.applied("shop.customers|0", 31)


def test_a_document_read_then_written_again_replaces_the_old(store: DocumentStore) -> None:
    store.write([doc("c-1", 1, 10)])
    state = store.load(["c-1"])["c-1"]
    state.view = CustomerOrders(customer_id="c-1", orders_placed=2)
    state.sources = {"shop.customers|0": 20}
    state.position = 20
    assert store.write([state]).conflicts == set()
    again = store.load(["c-1"])["c-1"]
    assert (again.view, again.position) == (CustomerOrders(customer_id="c-1", orders_placed=2), 20)


def test_a_deleted_document_stays_as_a_tombstone(store: DocumentStore) -> None:
    store.write([doc("c-1", 1, 10)])
    state = store.load(["c-1"])["c-1"]
    state.view, state.deleted, state.sources = None, True, {"shop.customers|0": 11}
    store.write([state])
    tombstone = store.load(["c-1"])["c-1"]
    assert (tombstone.view, tombstone.deleted) == (None, True)
    assert tombstone.applied("shop.customers|0", 11)


def test_many_documents_load_in_one_call(store: DocumentStore) -> None:
    store.write([doc(f"c-{i}", i, i + 1) for i in range(5)])
    loaded = store.load([f"c-{i}" for i in range(6)])
    assert sorted(loaded) == [f"c-{i}" for i in range(6)]
    assert [loaded[f"c-{i}"].position for i in range(6)] == [1, 2, 3, 4, 5, 0]
