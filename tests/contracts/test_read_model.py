"""The ReadModel port's contract beyond documents: versioned indices behind an
alias, guarded writes that conflict, tombstones in scans, checkpoints per index.

Runs against the in-memory read model (no services) and the Elasticsearch
one (real cluster, a fresh index prefix per test). The document half is
``test_document_store.py``'s.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cqrskit import PermanentError
from cqrskit.adapters.memory.read_model import MemoryIndexedReadModel
from cqrskit.checkpoints import Checkpoint
from cqrskit.projections._ports import ReadModel
from projections.customers import CustomerOrders
from tests.contracts.test_document_store import doc


@pytest.fixture(params=["memory", pytest.param("elasticsearch", marks=pytest.mark.integration)])
def model(request: pytest.FixtureRequest) -> Iterator[ReadModel]:
    if request.param == "memory":
        memory = MemoryIndexedReadModel("customers", CustomerOrders)
        memory.ensure()
        yield memory
        return
    yield request.getfixturevalue("es_read_model")


def test_ensure_puts_version_one_behind_the_alias_once(model: ReadModel) -> None:
    (first,) = model.versions()
    assert model.serving() == first
    model.ensure()
    assert model.versions() == [first]
    assert model.next_version() != first


def test_a_new_version_is_built_apart_then_swapped_in(model: ReadModel) -> None:
    old = model.serving()
    assert old is not None
    model.write([doc("c-1", 1, 10)])
    new = model.next_version()
    model.create_index(new, alias=False)
    assert model.versions() == [old, new]
    assert model.serving() == old
    model.write([doc("c-1", 7, 70), doc("c-2", 1, 71)], index=new)
    model.refresh()
    model.refresh(new)
    assert model.count() == 1  # queries still read the old one
    assert model.swap(new) == old
    assert model.serving() == new
    model.refresh()
    assert model.count() == 2
    with pytest.raises(PermanentError):
        model.delete_index(new)
    model.delete_index(old)
    assert model.versions() == [new]


def test_a_write_of_a_document_changed_since_it_was_read_conflicts(model: ReadModel) -> None:
    model.write([doc("c-1", 1, 10)])
    first = model.load(["c-1"])["c-1"]
    second = model.load(["c-1"])["c-1"]
    first.position, first.dirty = 11, True
    assert model.write([first]).conflicts == set()
    second.position, second.dirty = 12, True
    assert model.write([second]).conflicts == {"c-1"}
    assert model.write([doc("c-1", 5, 13)]).conflicts == {"c-1"}  # created twice
    assert model.load(["c-1"])["c-1"].position == 11
    assert model.last_written is not None
    assert model.last_written[1] == "c-1"


def test_a_scan_returns_tombstones_that_count_leaves_out(model: ReadModel) -> None:
    model.write([doc("c-1", 1, 10), doc("c-2", 1, 11)])
    gone = model.load(["c-2"])["c-2"]
    gone.view, gone.deleted = None, True
    model.write([gone])
    model.refresh()
    scanned = {d.doc_id: d.deleted for d in model.scan()}
    assert scanned == {"c-1": False, "c-2": True}
    assert model.count() == 1


def test_checkpoints_belong_to_the_index_they_name(model: ReadModel) -> None:
    serving = model.serving()
    assert serving is not None
    other = model.next_version()
    model.create_index(other, alias=False)

    def checkpoint(index: str, offset: int) -> Checkpoint:
        return Checkpoint("customers", "shop.customers", 0, offset, offset * 10, 1, (), index)

    model.save_checkpoints([checkpoint(serving, 5), checkpoint(other, 9)])
    assert [c.offset for c in model.checkpoints(serving)] == [5]
    assert sorted(c.offset for c in model.checkpoints()) == [5, 9]
    wanted = checkpoint(other, 0).doc_id
    assert [c.offset for c in model.stored_checkpoints([wanted, "nothing"])] == [9]
