"""Bulk bodies of the Elasticsearch read model, built without a cluster."""

from __future__ import annotations

import json

from cqrskit import Settings
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters.elasticsearch.read_model import ElasticsearchReadModel
from cqrskit.projections._ports import DocState
from projections.customers import CustomerOrders, CustomerOrdersProjection

PROJECTION = CustomerOrdersProjection()


def read_model(max_bulk_bytes: int) -> ElasticsearchReadModel:
    settings = Settings.load()
    model = ElasticsearchReadModel(
        es_backend.client(settings),  # connects lazily: nothing is sent here
        settings,
        PROJECTION.name,
        PROJECTION.view,
        PROJECTION.mapping(),
    )
    model.max_bulk_bytes = max_bulk_bytes
    return model


def docs(count: int, seq_no: int | None = None) -> list[DocState]:
    return [
        DocState(
            f"c-{i}",
            view=CustomerOrders(customer_id=f"c-{i}", orders_placed=i),
            sources={"store": i + 1},
            position=i + 1,
            seq_no=seq_no,
            primary_term=None if seq_no is None else 1,
        )
        for i in range(count)
    ]


def lines_of(bodies: list[bytes]) -> list[dict[str, object]]:
    return [json.loads(line) for body in bodies for line in body.splitlines()]


def test_a_large_write_is_split_into_bodies_under_the_limit_in_order() -> None:
    model = read_model(2000)
    written = docs(100)
    bodies = list(model._bulk_bodies(written, "target-v2"))
    assert len(bodies) > 5
    assert all(len(body) <= 2000 for body in bodies)
    assert all(body.endswith(b"\n") for body in bodies)
    lines = lines_of(bodies)
    assert [line["create"]["_id"] for line in lines[::2]] == [d.doc_id for d in written]  # type: ignore[index]
    assert lines[1::2] == [json.loads(json.dumps(d.body())) for d in written]


def test_a_small_write_is_one_body_with_guarded_actions() -> None:
    bodies = list(read_model(10 * 1024 * 1024)._bulk_bodies(docs(3, seq_no=7), "target-v2"))
    assert len(bodies) == 1
    actions = lines_of(bodies)[::2]
    assert actions[0] == {
        "index": {"_index": "target-v2", "_id": "c-0", "if_seq_no": 7, "if_primary_term": 1}
    }


def test_a_document_larger_than_the_limit_goes_alone() -> None:
    bodies = list(read_model(10)._bulk_bodies(docs(3), "target-v2"))
    assert len(bodies) == 3
    assert [len(lines_of([body])) for body in bodies] == [2, 2, 2]


def test_nothing_to_write_sends_nothing() -> None:
    assert list(read_model(2000)._bulk_bodies([], "target-v2")) == []
