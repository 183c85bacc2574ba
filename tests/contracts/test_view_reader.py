"""The view readers' contract, exercised through the reads the Search builder describes.

Each behaviour runs against four readers: in memory, blocking and awaited
(no services), and on Elasticsearch, blocking and awaited (real cluster, a
fresh index per test). The same reads give the same answers on all four.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import pytest
from elasticsearch import Elasticsearch
from pydantic import BaseModel

from cqrskit import Settings
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters.elasticsearch.search import AsyncElasticsearchSearch, ElasticsearchSearch
from cqrskit.adapters.memory.search import AsyncMemorySearch, MemorySearch
from cqrskit.errors import BadCursor
from cqrskit.projections import Text
from cqrskit.projections._mapping import METADATA_FIELD, mapping_for
from cqrskit.queries import Read, Search, arun, run

T = TypeVar("T")


class Item(BaseModel):
    item_id: str
    sku: str
    name: Annotated[str, Text]
    price: int


@dataclass
class Views:
    #: Runs one read on the reader under test, on ``index``.
    runner: Callable[[Read[Any]], Any]
    #: Store documents (id -> source, metadata included) and make them searchable.
    put: Callable[[dict[str, dict[str, Any]]], None]

    def run(self, read: Read[T]) -> T:
        result: T = self.runner(read)
        return result

    @staticmethod
    def search() -> Search[Item]:
        return Search(Item)


def _memory(awaited: bool) -> Views:
    reader = MemorySearch()
    index = "items"

    def put(docs: dict[str, dict[str, Any]]) -> None:
        reader.indices.setdefault(index, {}).update(docs)

    if awaited:
        async_reader = AsyncMemorySearch(reader)
        return Views(lambda read: asyncio.run(arun(async_reader, index, read)), put)
    return Views(lambda read: run(reader, index, read), put)


def _elasticsearch(es: Elasticsearch, prefix: str, settings: Settings, awaited: bool) -> Views:
    index = f"{prefix}items"
    es.indices.create(
        index=index,
        settings={"number_of_shards": 1, "number_of_replicas": 0},
        mappings=mapping_for(Item),
    )

    def put(docs: dict[str, dict[str, Any]]) -> None:
        operations: list[dict[str, Any]] = []
        for doc_id, source in docs.items():
            operations += [{"index": {"_index": index, "_id": doc_id}}, source]
        es.bulk(operations=operations, refresh=True)

    async def awaited_run(read: Read[Any]) -> Any:
        client = es_backend.async_client(settings)
        try:
            return await arun(AsyncElasticsearchSearch(client, "test"), index, read)
        finally:
            await client.close()

    if awaited:
        return Views(lambda read: asyncio.run(awaited_run(read)), put)
    reader = ElasticsearchSearch(es, "test")
    return Views(lambda read: run(reader, index, read), put)


@pytest.fixture(
    params=[
        "memory",
        "memory-async",
        pytest.param("elasticsearch", marks=pytest.mark.integration),
        pytest.param("elasticsearch-async", marks=pytest.mark.integration),
    ]
)
def views(request: pytest.FixtureRequest) -> Iterator[Views]:
    awaited = request.param.endswith("-async")
    if request.param.startswith("memory"):
        yield _memory(awaited)
    else:
        yield _elasticsearch(
            request.getfixturevalue("es"),
            request.getfixturevalue("es_prefix"),
            request.getfixturevalue("settings"),
            awaited,
        )


def item(n: int, name: str, *, deleted: bool = False) -> dict[str, Any]:
    return {
        "item_id": f"i-{n}",
        "sku": f"SKU-{n % 3}",
        "name": name,
        "price": n * 10,
        METADATA_FIELD: {
            "sources": {"applied": {}, "failed": {}},
            "position": n,
            "deleted": deleted,
        },
    }


def fill(views: Views) -> None:
    names = ["red shirt", "blue shirt", "red hat", "green hat", "red scarf", "old coat"]
    docs = {f"i-{n}": item(n, name) for n, name in enumerate(names)}
    docs["i-9"] = item(9, "red ghost", deleted=True)
    views.put(docs)


def test_get_answers_the_view_without_metadata_and_none_for_missing_or_deleted(
    views: Views,
) -> None:
    fill(views)
    search = views.search()
    expected = Item(item_id="i-1", sku="SKU-1", name="blue shirt", price=10)
    assert views.run(search.get("i-1")) == expected
    assert views.run(search.get("i-404")) is None
    assert views.run(search.get("i-9")) is None


def test_filters_ranges_and_text_narrow_the_matches(views: Views) -> None:
    fill(views)
    search = views.search()
    assert views.run(search.count()) == 6  # the tombstone does not count
    assert views.run(search.where(sku="SKU-0").count()) == 2
    assert views.run(search.where_in("sku", ["SKU-1", "SKU-2"]).count()) == 4
    assert views.run(search.range("price", gte=20, lt=50).count()) == 3
    reds = views.run(search.text("red", "name").page())
    assert {i.item_id for i in reds.items} == {"i-0", "i-2", "i-4"}
    assert views.run(search.text("red hat", "name", "sku").count()) == 1


def test_pages_return_every_match_once_in_sort_order(views: Views) -> None:
    fill(views)
    search = views.search().sort("-price")
    seen: list[str] = []
    page = views.run(search.page(size=4))
    assert page.total == 6
    seen += [i.item_id for i in page.items]
    while page.cursor:
        page = views.run(search.page(size=4, cursor=page.cursor))
        seen += [i.item_id for i in page.items]
    assert seen == [f"i-{n}" for n in (5, 4, 3, 2, 1, 0)]


def test_a_step_after_the_read_shapes_the_answer(views: Views) -> None:
    fill(views)
    read = views.search().where(sku="SKU-0").page().then(lambda p: sorted(i.name for i in p.items))
    assert views.run(read) == ["green hat", "red shirt"]


def test_a_cursor_not_issued_by_the_service_is_refused(views: Views) -> None:
    fill(views)
    with pytest.raises(BadCursor):
        views.run(views.search().page(size=2, cursor="not-a-cursor"))
