"""The checkpoint ports' contract: CheckpointStore and CheckpointReader.

Each behaviour runs against the in-memory adapter (no services) and the
Elasticsearch one (real cluster, a fresh index prefix per test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from elasticsearch import Elasticsearch

from cqrskit.adapters.elasticsearch.checkpoints import (
    CHECKPOINT_MAPPING,
    ElasticsearchCheckpointReader,
    ElasticsearchCheckpointStore,
)
from cqrskit.adapters.memory.checkpoints import (
    MemoryCheckpointLog,
    MemoryCheckpointReader,
    MemoryCheckpointStore,
)
from cqrskit.checkpoints import FILL_WRITER, WORKER_WRITER, Checkpoint
from cqrskit.projections._ports import CheckpointStore
from cqrskit.queries import CheckpointReader


@dataclass
class Checkpoints:
    """One implementation of both ports over one backing store."""

    store: Callable[[str], CheckpointStore]
    reader: CheckpointReader
    #: Put ``index`` behind ``alias``.
    point: Callable[[str, str], None]
    #: Make saved checkpoints visible to the reader (a refresh, for Elasticsearch).
    settle: Callable[[], None]
    #: What the names of real indices and aliases start with.
    prefix: str = ""


def _memory() -> Checkpoints:
    log = MemoryCheckpointLog()

    def point(alias: str, index: str) -> None:
        log.aliases[alias] = index

    return Checkpoints(
        lambda name: MemoryCheckpointStore(log, name),
        MemoryCheckpointReader(log),
        point,
        lambda: None,
    )


def _elasticsearch(es: Elasticsearch, prefix: str) -> Checkpoints:
    index = f"{prefix}checkpoints"
    es.indices.create(
        index=index,
        settings={"number_of_shards": 1, "number_of_replicas": 0},
        mappings=CHECKPOINT_MAPPING,
    )

    def point(alias: str, target: str) -> None:
        settings = {"number_of_shards": 1, "number_of_replicas": 0}
        es.indices.create(index=target, settings=settings)
        es.indices.put_alias(index=target, name=alias)

    return Checkpoints(
        lambda name: ElasticsearchCheckpointStore(es, "test", index, name),
        ElasticsearchCheckpointReader(es, index, "test"),
        point,
        lambda: es.indices.refresh(index=index),
        prefix,
    )


@pytest.fixture(params=["memory", pytest.param("elasticsearch", marks=pytest.mark.integration)])
def checkpoints(request: pytest.FixtureRequest) -> Iterator[Checkpoints]:
    if request.param == "memory":
        yield _memory()
    else:
        es = request.getfixturevalue("es")
        yield _elasticsearch(es, request.getfixturevalue("es_prefix"))


def checkpoint(
    index: str,
    partition: int = 0,
    *,
    offset: int = 10,
    position: int = 100,
    writer: str = WORKER_WRITER,
    projection: str = "orders",
) -> Checkpoint:
    return Checkpoint(
        projection=projection,
        topic="shop.orders",
        partition=partition,
        offset=offset,
        position=position,
        partitions=2,
        topics=("shop.orders",),
        index=index,
        writer=writer,
        from_offset=3,
    )


def test_saved_checkpoints_read_back_whole(checkpoints: Checkpoints) -> None:
    store = checkpoints.store("orders")
    saved = [checkpoint("orders-v1", 0), checkpoint("orders-v1", 1, writer=FILL_WRITER)]
    store.save(saved)
    assert sorted(store.read("orders-v1"), key=lambda c: c.doc_id) == sorted(
        saved, key=lambda c: c.doc_id
    )


def test_a_checkpoint_replaces_the_one_with_its_id(checkpoints: Checkpoints) -> None:
    store = checkpoints.store("orders")
    store.save([checkpoint("orders-v1", offset=10)])
    store.save([checkpoint("orders-v1", offset=20, position=200)])
    assert [(c.offset, c.position) for c in store.read("orders-v1")] == [(20, 200)]


def test_reading_is_per_index_and_per_projection(checkpoints: Checkpoints) -> None:
    orders, stock = checkpoints.store("orders"), checkpoints.store("stock")
    orders.save([checkpoint("orders-v1"), checkpoint("orders-v2")])
    stock.save([checkpoint("stock-v1", projection="stock")])
    assert [c.index for c in orders.read("orders-v2")] == ["orders-v2"]
    assert sorted(c.index for c in orders.read()) == ["orders-v1", "orders-v2"]
    assert [c.projection for c in stock.read()] == ["stock"]


def test_nothing_saved_reads_as_nothing(checkpoints: Checkpoints) -> None:
    store = checkpoints.store("orders")
    assert store.read() == []
    assert store.read_ids(["orders-v1|shop.orders|0|worker"]) == []
    assert store.read_ids([]) == []


def test_read_ids_returns_the_existing_ones_in_real_time(checkpoints: Checkpoints) -> None:
    store = checkpoints.store("orders")
    saved = checkpoint("orders-v1", 1)
    store.save([saved])
    assert store.read_ids([saved.doc_id, "orders-v1|shop.orders|9|worker"]) == [saved]


def test_the_reader_finds_the_index_behind_an_alias(checkpoints: Checkpoints) -> None:
    alias, index = f"{checkpoints.prefix}orders", f"{checkpoints.prefix}orders-v3"
    assert checkpoints.reader.serving(alias) is None
    checkpoints.point(alias, index)
    assert checkpoints.reader.serving(alias) == index


def test_the_reader_sees_an_index_s_checkpoints(checkpoints: Checkpoints) -> None:
    checkpoints.store("orders").save([checkpoint("orders-v1", 0), checkpoint("orders-v2", 0)])
    checkpoints.settle()
    assert [c.index for c in checkpoints.reader.applied("orders", "orders-v1")] == ["orders-v1"]
    assert checkpoints.reader.applied("stock", "orders-v1") == []
