"""The ViewReader port's contract, exercised through the Search builder that runs on it.

Each behaviour runs against the in-memory search (no services) and the
Elasticsearch one (real cluster, a fresh index per test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from elasticsearch import Elasticsearch
from pydantic import BaseModel

from cqrskit.adapters.elasticsearch.search import ElasticsearchSearch
from cqrskit.adapters.memory.search import MemorySearch
from cqrskit.errors import BadCursor
from cqrskit.projections import Text
from cqrskit.projections._mapping import METADATA_FIELD, mapping_for
from cqrskit.queries import Search, ViewReader


class Item(BaseModel):
    item_id: str
    sku: str
    name: Annotated[str, Text]
    price: int


@dataclass
class Views:
    reader: ViewReader
    index: str
    #: Store documents (id -> source, metadata included) and make them searchable.
    put: Callable[[dict[str, dict[str, Any]]], None]

    def search(self) -> Search[Item]:
        return Search(self.reader, self.index, Item)


def _memory() -> Views:
    reader = MemorySearch()
    index = "items"

    def put(docs: dict[str, dict[str, Any]]) -> None:
        reader.indices.setdefault(index, {}).update(docs)

    return Views(reader, index, put)


def _elasticsearch(es: Elasticsearch, prefix: str) -> Views:
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

    return Views(ElasticsearchSearch(es, "test"), index, put)


@pytest.fixture(params=["memory", pytest.param("elasticsearch", marks=pytest.mark.integration)])
def views(request: pytest.FixtureRequest) -> Iterator[Views]:
    if request.param == "memory":
        yield _memory()
    else:
        yield _elasticsearch(request.getfixturevalue("es"), request.getfixturevalue("es_prefix"))


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
    assert views.search().get("i-1") == Item(
        item_id="i-1", sku="SKU-1", name="blue shirt", price=10
    )
    assert views.search().get("i-404") is None
    assert views.search().get("i-9") is None


def test_filters_ranges_and_text_narrow_the_matches(views: Views) -> None:
    fill(views)
    search = views.search()
    assert search.count() == 6  # the tombstone does not count
    assert search.where(sku="SKU-0").count() == 2
    assert search.where_in("sku", ["SKU-1", "SKU-2"]).count() == 4
    assert search.range("price", gte=20, lt=50).count() == 3
    assert {i.item_id for i in search.text("red", "name").page().items} == {"i-0", "i-2", "i-4"}
    assert search.text("red hat", "name", "sku").count() == 1


def test_pages_return_every_match_once_in_sort_order(views: Views) -> None:
    fill(views)
    search = views.search().sort("-price")
    seen: list[str] = []
    page = search.page(size=4)
    assert page.total == 6
    seen += [i.item_id for i in page.items]
    while page.cursor:
        page = search.page(size=4, cursor=page.cursor)
        seen += [i.item_id for i in page.items]
    assert seen == [f"i-{n}" for n in (5, 4, 3, 2, 1, 0)]


def test_a_cursor_not_issued_by_the_service_is_refused(views: Views) -> None:
    fill(views)
    with pytest.raises(BadCursor):
        views.search().page(size=2, cursor="not-a-cursor")
