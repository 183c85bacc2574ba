"""The checkpoint ports' contract: CheckpointStore and CheckpointReader (blocking and awaited).

Each behaviour runs against the in-memory adapters (no services) and the
Elasticsearch ones (real cluster, a fresh index prefix per test); the
reader's, blocking and awaited alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from cqrskit import Settings
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters.elasticsearch.checkpoints import (
    CHECKPOINT_MAPPING,
    AsyncElasticsearchCheckpointReader,
    ElasticsearchCheckpointReader,
    ElasticsearchCheckpointStore,
)
from cqrskit.adapters.memory.checkpoints import (
    AsyncMemoryCheckpointReader,
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


class Awaited:
    """An awaited reader behind the blocking interface, on one event loop of its own."""

    def __init__(self, make: Callable[[], object]):
        self.loop = asyncio.new_event_loop()
        self.reader: Any = self.loop.run_until_complete(self._made(make))

    @staticmethod
    async def _made(make: Callable[[], object]) -> object:
        return make()  # inside the loop: an asyncio client binds to it

    def serving(self, alias: str) -> str | None:
        found: str | None = self.loop.run_until_complete(self.reader.serving(alias))
        return found

    def applied(self, projection: str, index: str) -> list[Checkpoint]:
        found: list[Checkpoint] = self.loop.run_until_complete(
            self.reader.applied(projection, index)
        )
        return found

    def close(self) -> None:
        es = getattr(self.reader, "es", None)
        if es is not None:
            self.loop.run_until_complete(es.close())
        self.loop.close()


def _memory(awaited: bool) -> Checkpoints:
    log = MemoryCheckpointLog()

    def point(alias: str, index: str) -> None:
        log.aliases[alias] = index

    reader: CheckpointReader = MemoryCheckpointReader(log)
    if awaited:
        reader = Awaited(lambda: AsyncMemoryCheckpointReader(log))
    return Checkpoints(lambda name: MemoryCheckpointStore(log, name), reader, point, lambda: None)


def _elasticsearch(
    es: Elasticsearch, prefix: str, settings: Settings, awaited: bool
) -> Checkpoints:
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

    def async_reader() -> object:
        return AsyncElasticsearchCheckpointReader(es_backend.async_client(settings), index, "test")

    reader: CheckpointReader = ElasticsearchCheckpointReader(es, index, "test")
    if awaited:
        reader = Awaited(async_reader)
    return Checkpoints(
        lambda name: ElasticsearchCheckpointStore(es, "test", index, name),
        reader,
        point,
        lambda: es.indices.refresh(index=index),
        prefix,
    )


@pytest.fixture(
    params=[
        "memory",
        "memory-async",
        pytest.param("elasticsearch", marks=pytest.mark.integration),
        pytest.param("elasticsearch-async", marks=pytest.mark.integration),
    ]
)
def checkpoints(request: pytest.FixtureRequest) -> Iterator[Checkpoints]:
    awaited = request.param.endswith("-async")
    if request.param.startswith("memory"):
        made = _memory(awaited)
    else:
        es, prefix = request.getfixturevalue("es"), request.getfixturevalue("es_prefix")
        made = _elasticsearch(es, prefix, request.getfixturevalue("settings"), awaited)
    yield made
    if isinstance(made.reader, Awaited):
        made.reader.close()


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


def test_the_reader_sees_a_checkpoint_s_update_at_once_and_how_far_it_is_searchable(
    checkpoints: Checkpoints,
) -> None:
    """Read-your-writes waits on these reads: once the reader knows an index's
    checkpoints, a newer save shows without waiting for any refresh."""
    store = checkpoints.store("orders")
    first = checkpoint("orders-v1", 0, position=100)
    store.save([first, checkpoint("orders-v1", 1, position=100)])
    checkpoints.settle()
    assert {c.position for c in checkpoints.reader.applied("orders", "orders-v1")} == {100}
    moved = Checkpoint(**{**first.__dict__, "position": 150, "searchable": 120})
    store.save([moved])  # no settle: the next look must see it
    found = {c.partition: c for c in checkpoints.reader.applied("orders", "orders-v1")}
    assert (found[0].position, found[0].searchable) == (150, 120)
