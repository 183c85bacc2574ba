"""The example HTTP API over real HTTP: read-your-writes, paging, outages, error codes."""

from __future__ import annotations

import subprocess
import threading
import time
from uuid import uuid4

import httpx
from elasticsearch import Elasticsearch

from cqrskit.adapters.postgres.reader import store_head
from projections.orders import OrderSummaries
from tests.integration.conftest import REPO_ROOT
from tests.integration.projections.conftest import Pipeline
from tests.integration.projections.test_worker import bulk_orders
from tests.integration.relay.conftest import wait_until

ELASTICSEARCH = ["bash", str(REPO_ROOT / "scripts" / "elasticsearch.sh")]
LINE = {"sku": "tea", "quantity": 2, "unit_price": "3.50"}


def checkpoints(pipeline: Pipeline) -> str:
    """Each projection's checkpoint per partition, for a failure message."""
    es = Elasticsearch(pipeline.settings.elasticsearch_url)
    try:
        found = es.options(ignore_status=404).search(
            index=f"{pipeline.settings.index_prefix}cqrskit-checkpoints", size=1000
        )
    finally:
        es.close()
    rows = sorted(
        (h["_source"]["projection"], h["_source"]["topic"], h["_source"]["partition"],
         h["_source"]["position"])
        for h in found.get("hits", {}).get("hits", [])
    )  # fmt: skip
    return "; ".join(f"{p} {t}[{n}]={pos}" for p, t, n, pos in rows)


def place(api: httpx.Client, customer: str = "ada") -> dict[str, object]:
    response = api.post("/orders", json={"customer_id": customer, "lines": [LINE]})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_query_with_min_position_always_sees_its_own_write(
    api: httpx.Client, pipeline: Pipeline
) -> None:
    for n in range(20):
        customer = f"customer-{n % 4}"
        placed = place(api, customer)
        order = api.get(
            f"/orders/{placed['aggregate_id']}", params={"min_position": placed["position"]}
        )
        assert order.status_code == 200, f"{order.text}; checkpoints: {checkpoints(pipeline)}"
        assert order.json()["customer_id"] == customer
        listed = api.get(
            "/orders", params={"customer_id": customer, "min_position": placed["position"]}
        )
        assert listed.status_code == 200, listed.text
        assert placed["aggregate_id"] in {o["order_id"] for o in listed.json()["items"]}
        totals = api.get(f"/customers/{customer}", params={"min_position": placed["position"]})
        assert totals.json()["orders_placed"] == n // 4 + 1


def test_paging_through_more_than_10000_documents_returns_each_once(
    api: httpx.Client, pipeline: Pipeline
) -> None:
    bulk_orders(pipeline.settings, 10_500, customers=7)
    head = store_head(pipeline.settings, "shop")
    # First the worker's own account (a stall shows here, named), then the
    # API's read-your-writes on top of it.
    pipeline.wait_applied(OrderSummaries(), timeout=180)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"page_size": 500, "sort": "placed_at"}
        if cursor:
            params["cursor"] = cursor
        else:  # the first page reads its own writes: all 10,500
            params["min_position"] = head
            params["wait"] = 30
        # The client waits longer than the server may wait for the read model.
        page = api.get("/orders", params=params, timeout=60)
        assert page.status_code == 200, f"{page.text}; checkpoints: {checkpoints(pipeline)}"
        body = page.json()
        assert body["total"] == 10_500
        seen += [o["order_id"] for o in body["items"]]
        pages += 1
        cursor = body["cursor"]
        if cursor is None:
            break
    assert pages == 21
    assert len(seen) == 10_500
    assert len(set(seen)) == 10_500


def test_each_error_has_its_status_and_bad_input_is_never_a_500(api: httpx.Client) -> None:
    # 422 with the field path, for a bad body and for a bad value in a path + body.
    bad = api.post("/orders", json={"customer_id": "ada", "lines": [{"sku": "tea", "quantity": 0}]})
    assert bad.status_code == 422
    locations = {tuple(d["loc"]) for d in bad.json()["detail"]}
    assert ("body", "lines", 0, "quantity") in locations or (
        "body",
        "lines",
        0,
        "unit_price",
    ) in locations
    placed = place(api)
    order_id = placed["aggregate_id"]
    empty_reason = api.post(f"/orders/{order_id}/cancel", json={"reason": ""})
    assert empty_reason.status_code == 422
    assert empty_reason.json()["detail"] == [
        {"loc": ["reason"], "msg": "String should have at least 1 character", "type": "value_error"}
    ]
    # 404 for an unknown aggregate (command) and an unknown document (query).
    assert api.post(f"/orders/{uuid4()}/cancel", json={"reason": "x"}).status_code == 404
    assert api.get(f"/orders/{uuid4()}").status_code == 404
    # 409 for a rule the aggregate's state refuses, and for a reused idempotency key.
    assert api.post(f"/orders/{order_id}/cancel", json={"reason": "x"}).status_code == 200
    assert api.post(f"/orders/{order_id}/cancel", json={"reason": "x"}).status_code == 409
    key = {"Idempotency-Key": f"k-{uuid4()}"}
    assert (
        api.post("/orders", json={"customer_id": "a", "lines": [LINE]}, headers=key).status_code
        == 201
    )
    again = api.post("/orders", json={"customer_id": "a", "lines": [LINE]}, headers=key)
    assert again.status_code == 201
    assert again.json()["replayed"] is True
    assert (
        api.post("/orders", json={"customer_id": "b", "lines": [LINE]}, headers=key).status_code
        == 409
    )
    # A stale read: 409 by default, 200 flagged on request.
    far = {"min_position": 10**9, "wait": 1}
    stale = api.get(f"/orders/{order_id}", params={**far, "stale": "error"}, timeout=60)
    assert stale.status_code == 409
    assert stale.json()["stale"] is True
    flagged = api.get(f"/orders/{order_id}", params={**far, "stale": "flag"}, timeout=60)
    assert flagged.status_code == 200
    assert flagged.headers["X-Stale"] == "true"
    # 400 for a cursor we never issued; 422 for malformed parameters.
    assert api.get("/orders", params={"cursor": "not-a-cursor"}).status_code == 400
    for path, params in [
        ("/orders/not-a-uuid", {}),
        ("/orders", {"page_size": 0}),
        ("/orders", {"status": "lost"}),
        ("/orders", {"min_total": "much"}),
        ("/products", {}),
        ("/orders/stats", {"min_position": -1}),
    ]:
        response = api.get(path, params=params)
        assert response.status_code == 422, (path, params, response.status_code)
    garbage = api.post(
        "/orders", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert garbage.status_code == 422


def test_concurrent_writers_beyond_the_retries_get_409(
    pipeline: Pipeline, api: httpx.Client
) -> None:
    item = api.post("/items", json={"sku": "tea", "name": "green tea", "quantity": 0}).json()
    statuses: list[int] = []

    def restock() -> None:
        with httpx.Client(base_url=api.base_url, timeout=30) as client:
            for _ in range(15):
                statuses.append(
                    client.post(
                        f"/items/{item['aggregate_id']}/restock", json={"quantity": 1}
                    ).status_code
                )

    threads = [threading.Thread(target=restock) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert set(statuses) <= {200, 409}
    assert statuses.count(200) > 0


def test_with_elasticsearch_stopped_queries_answer_503_fast_and_recover(
    api: httpx.Client, es: Elasticsearch, pipeline: Pipeline
) -> None:
    placed = place(api)
    path = f"/orders/{placed['aggregate_id']}"
    first = api.get(path, params={"min_position": placed["position"]})
    assert first.status_code == 200, f"{first.text}; checkpoints: {checkpoints(pipeline)}"
    subprocess.run([*ELASTICSEARCH, "stop"], check=True, timeout=180)
    latencies: list[float] = []
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = api.get(path)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 503, response.text
            # Unreachable (1 s), then the breaker open (the seconds until it half-opens).
            assert 1 <= int(response.headers["Retry-After"]) <= 5
    finally:
        subprocess.run([*ELASTICSEARCH, "start"], check=True, timeout=300)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"{len(latencies)} queries while Elasticsearch was down: p99 {p99 * 1000:.1f} ms")
    assert len(latencies) > 50
    assert p99 < 0.1
    wait_until(lambda: api.get(path).status_code == 200, 60, "the API to answer again by itself")
