"""The shop's HTTP API without any service: its buses replaced through FastAPI's overrides.

For every endpoint, each status it can send (its success, request
validation, and every error its bus may raise) is provoked, and the body
sent is validated against the schema the OpenAPI document declares for that
status: the document lists what the API really sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import jsonschema
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from cqrskit import (
    AggregateNotFound,
    BadCursor,
    CircuitOpen,
    CommandBus,
    CommandRejected,
    ConcurrencyError,
    CqrskitError,
    FieldError,
    IdempotencyKeyReused,
    NotFound,
    Overloaded,
    QueryRejected,
    RuleViolated,
    ServiceUnavailable,
    StaleRead,
)
from cqrskit.adapters.memory.checkpoints import AsyncMemoryCheckpointReader, MemoryCheckpointLog
from cqrskit.adapters.memory.search import AsyncMemorySearch, MemorySearch
from cqrskit.commands import AsyncCommandBus
from cqrskit.fastapi import command_bus, query_bus
from cqrskit.queries import AsyncQueryBus, AsyncQueryPorts, Limits
from cqrskit.topology import IndexNames
from examples.shop.api import create_app
from examples.shop.application import ShopApp, handlers
from examples.shop.commands import PlaceOrder
from examples.shop.queries import queries

LINE = {"sku": "tea", "quantity": 1, "unit_price": "2.00"}
ID = "3f1c2a4e-8b7d-4c6e-9a1f-2b3c4d5e6f70"

#: What each command endpoint and query endpoint is sent: (method, path, JSON body, params).
COMMANDS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/orders", {"customer_id": "ada", "lines": [LINE]}),
    ("POST", f"/orders/{ID}/cancel", {"reason": "no"}),
    ("POST", f"/orders/{ID}/payments", {"amount": "2.00"}),
    ("POST", f"/payments/{ID}/capture", None),
    ("POST", "/items", {"sku": "tea", "name": "green tea", "quantity": 1}),
    ("POST", f"/items/{ID}/restock", {"quantity": 1}),
    ("POST", f"/items/{ID}/reservations", {"order_id": ID, "quantity": 1}),
]
#: (path, params, status answered on empty in-memory read models: aggregations need
#: Elasticsearch, so the in-memory store refuses them, a 500).
QUERIES: list[tuple[str, dict[str, Any], int]] = [
    ("/orders/stats", {}, 500),
    (f"/orders/{ID}", {}, 404),
    ("/orders", {}, 200),
    ("/customers/ada", {}, 404),
    ("/products", {"text": "tea"}, 200),
    ("/stock/low", {}, 200),
]
#: What a command bus may raise, and what a query bus may raise (their "Raises:").
COMMAND_ERRORS: list[CqrskitError] = [
    CommandRejected("PlaceOrder", [FieldError("lines.0.quantity", "must be positive")]),
    AggregateNotFound(UUID(ID), "Order"),
    RuleViolated("the order is cancelled already"),
    ConcurrencyError(UUID(ID), 5),
    IdempotencyKeyReused("k-1", "PlaceOrder"),
    ServiceUnavailable("PostgreSQL", "127.0.0.1:5432", "connection refused"),
    CqrskitError("something of the service itself"),
]
QUERY_ERRORS: list[CqrskitError] = [
    QueryRejected("ListOrders", [FieldError("page_size", "must be at most 500")]),
    NotFound("OrderById", "order_summaries"),
    StaleRead("order_summaries", 900, 1.0),
    BadCursor("the cursor is not one this service issued"),
    CircuitOpen("order_summaries", 5, 10, 4.2),
    Overloaded("order_summaries", "read-your-writes waits", 1000),
    ServiceUnavailable("Elasticsearch", "127.0.0.1:9200", "connection refused"),
    CqrskitError("something of the service itself"),
]


@dataclass
class Raising:
    """A bus that raises ``error`` from whatever it is asked."""

    error: Exception
    handlers: Any = None

    def build(self, *_: object, **__: object) -> object:
        raise self.error

    async def dispatch(self, *_: object, **__: object) -> object:
        raise self.error

    async def ask(self, *_: object, **__: object) -> object:
        raise self.error


def raising(error: Exception, handlers: Any = None) -> Any:
    """A dependency giving a :class:`Raising` bus (no parameters for FastAPI to read)."""
    return lambda: Raising(error, handlers)


def memory_buses() -> tuple[AsyncCommandBus, AsyncQueryBus]:
    """The shop's real buses on in-memory stores: its command handlers, its query handlers."""
    commands = AsyncCommandBus(CommandBus(ShopApp(persistence="memory"), handlers), threads=2)
    ports = AsyncQueryPorts(
        AsyncMemorySearch(MemorySearch()), AsyncMemoryCheckpointReader(MemoryCheckpointLog())
    )
    return commands, AsyncQueryBus(queries, ports, IndexNames("shop-"), Limits(read_wait=0.1))


@pytest.fixture
def app() -> Iterator[FastAPI]:
    app = create_app()  # no lifespan runs without `with TestClient(app)`: no services
    commands, reads = memory_buses()
    app.dependency_overrides[command_bus] = lambda: commands
    app.dependency_overrides[query_bus] = lambda: reads
    yield app
    commands.close()


def declared(app: FastAPI, method: str, path: str, status: int) -> dict[str, Any]:
    """The JSON schema the OpenAPI document declares for one status of one endpoint."""
    document = app.openapi()
    route = next(
        r
        for r in app.routes
        if isinstance(r, APIRoute) and method in r.methods and r.path_regex.match(path)
    )
    operation = document["paths"][route.path][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {route.path} sends {status}, not declared"
    content = responses[str(status)].get("content", {}).get("application/json")
    assert content is not None, f"{method} {route.path} {status}: no body schema declared"
    return {**content["schema"], "components": document.get("components", {})}


def check(app: FastAPI, method: str, path: str, response: Any) -> None:
    schema = declared(app, method, path, response.status_code)
    jsonschema.validate(response.json(), schema)


def test_every_command_endpoint_declares_what_it_sends(app: FastAPI) -> None:
    client = TestClient(app)
    real = app.dependency_overrides[command_bus]
    for method, path, body in COMMANDS:
        ok = client.request(method, path, json=body)
        # The aggregates do not exist in memory (404) except for new ones (201).
        assert ok.status_code in {200, 201, 404}, (path, ok.status_code, ok.text)
        check(app, method, path, ok)
        invalid = client.request(method, path.replace(ID, "not-a-uuid"), json={"lines": 3})
        assert invalid.status_code == 422, (path, invalid.text)
        check(app, method, path.replace(ID, "not-a-uuid"), invalid)
        for error in COMMAND_ERRORS:
            app.dependency_overrides[command_bus] = raising(error)
            response = client.request(method, path, json=body)
            check(app, method, path, response)
        app.dependency_overrides[command_bus] = real


def test_every_query_endpoint_declares_what_it_sends(app: FastAPI) -> None:
    client = TestClient(app)
    real = app.dependency_overrides[query_bus]
    for path, params, status in QUERIES:
        ok = client.get(path, params=params)
        assert ok.status_code == status, (path, ok.status_code, ok.text)
        check(app, "GET", path, ok)
        invalid = client.get(path, params={**params, "min_position": -1})
        assert invalid.status_code == 422, (path, invalid.text)
        check(app, "GET", path, invalid)
        for error in QUERY_ERRORS:
            app.dependency_overrides[query_bus] = raising(error, queries)
            response = client.get(path, params=params)
            check(app, "GET", path, response)
        app.dependency_overrides[query_bus] = real


def test_errors_map_to_statuses_with_their_headers_and_no_reprs(app: FastAPI) -> None:
    client = TestClient(app)
    real = app.dependency_overrides[query_bus]
    expected = {
        CircuitOpen: (503, {"retry-after": "5"}),
        Overloaded: (503, {"retry-after": "1"}),
        ServiceUnavailable: (503, {"retry-after": "1"}),
        StaleRead: (409, {"x-stale": "true"}),
        NotFound: (404, {}),
        BadCursor: (400, {}),
        QueryRejected: (422, {}),
        CqrskitError: (500, {}),
    }
    for error in QUERY_ERRORS:
        app.dependency_overrides[query_bus] = raising(error, queries)
        response = client.get(f"/orders/{ID}")
        status, headers = expected[type(error)]
        assert response.status_code == status, (error, response.text)
        for name, value in headers.items():
            assert response.headers[name] == value, (error, dict(response.headers))
        assert response.json()["error"] == type(error).__name__
    app.dependency_overrides[query_bus] = real
    missing = client.get(f"/orders/{uuid4()}")
    assert missing.status_code == 404
    assert "UUID(" not in missing.text
    assert missing.json()["message"] == (
        "no document of read model 'order_summaries' answers this OrderById"
    )


def test_a_command_and_its_read_go_through_the_overridden_buses(app: FastAPI) -> None:
    client = TestClient(app)
    placed = client.post("/orders", json={"customer_id": "ada", "lines": [LINE]})
    assert placed.status_code == 201, placed.text
    assert placed.json()["position"] == 1
    again = client.post(
        "/orders",
        json={"customer_id": "ada", "lines": [LINE]},
        headers={"Idempotency-Key": "k-1"},
    )
    replay = client.post(
        "/orders",
        json={"customer_id": "ada", "lines": [LINE]},
        headers={"Idempotency-Key": "k-1"},
    )
    assert replay.json()["replayed"] is True
    assert replay.json()["aggregate_id"] == again.json()["aggregate_id"]
    assert replay.json()["position"] == again.json()["position"] == 2
    # Nothing projects in memory here: a read-your-writes read is stale, flagged on request.
    flagged = client.get(
        f"/orders/{placed.json()['aggregate_id']}",
        params={"min_position": 1, "wait": 0.05, "stale": "flag"},
    )
    assert flagged.status_code == 404
    refused = client.get("/orders", params={"min_position": 1, "wait": 0.05})
    assert refused.status_code == 409
    assert refused.json()["position"] == 1


def test_the_async_command_bus_keeps_the_loop_free() -> None:
    commands, _ = memory_buses()

    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        beat = asyncio.create_task(ticker())
        for n in range(20):
            command = commands.build(PlaceOrder, customer_id=f"c{n}", lines=[LINE])
            await commands.dispatch(command)
        beat.cancel()
        return ticks

    try:
        assert asyncio.run(scenario()) > 20  # the loop ran while commands ran on threads
    finally:
        commands.close()
