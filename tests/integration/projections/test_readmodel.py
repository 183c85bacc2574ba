"""Bulk writes split by size, against the real Elasticsearch."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest
from elasticsearch import Elasticsearch

from cqrskit import Settings
from cqrskit.adapters.elasticsearch.read_model import ElasticsearchReadModel, read_model_for
from cqrskit.projections._ports import DocState
from projections.customers import CustomerOrders, CustomerOrdersProjection

PROJECTION = CustomerOrdersProjection()


@pytest.fixture
def read_model(
    settings: Settings, unique_name: str, es: Elasticsearch
) -> Iterator[ElasticsearchReadModel]:
    model = read_model_for(
        settings.model_copy(update={"index_prefix": f"{unique_name}-"}), PROJECTION
    )
    model.ensure()
    try:
        yield model
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{unique_name}-*")


def new_docs(count: int) -> list[DocState]:
    return [
        DocState(
            f"c-{i}",
            view=CustomerOrders(customer_id=f"c-{i}", orders_placed=i),
            sources={"store": i + 1},
            position=i + 1,
        )
        for i in range(count)
    ]


def test_a_write_larger_than_the_limit_goes_in_several_bulks_and_writes_every_document(
    read_model: ElasticsearchReadModel, es: Elasticsearch
) -> None:
    read_model.max_bulk_bytes = 4000
    bulk = mock.patch.object(read_model.es, "bulk", wraps=read_model.es.bulk)
    with bulk as sent:
        assert read_model.write(new_docs(200)).conflicts == set()
    assert sent.call_count > 10
    es.indices.refresh(index=read_model.alias)
    loaded = read_model.load([f"c-{i}" for i in range(200)])
    assert all(
        loaded[f"c-{i}"].view == CustomerOrders(customer_id=f"c-{i}", orders_placed=i)
        for i in range(200)
    )


def test_conflicts_in_any_of_the_bulks_are_all_reported(
    read_model: ElasticsearchReadModel, es: Elasticsearch
) -> None:
    read_model.max_bulk_bytes = 4000
    read_model.write(new_docs(200))
    stale = read_model.load([f"c-{i}" for i in range(200)])
    # Another writer changes two documents, one early and one late in the batch.
    for doc_id in ("c-3", "c-190"):
        es.update(index=read_model.alias, id=doc_id, doc={"orders_placed": 999})
    for doc in stale.values():
        doc.view = CustomerOrders(customer_id=doc.doc_id, orders_placed=1)
    assert read_model.write(list(stale.values())).conflicts == {"c-3", "c-190"}
