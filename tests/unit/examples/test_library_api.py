"""The HTTP API in a test of its own: no service, the buses overridden."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cqrskit.fastapi import command_bus, query_bus
from cqrskit.testing import MemoryBuses
from examples.library.api import app
from examples.library.app import LibraryApp, handlers
from examples.library.queries import queries
from examples.library.views import Catalogue


# --8<-- [start:override]
@pytest.fixture
def client() -> Iterator[TestClient]:
    buses = MemoryBuses(LibraryApp, handlers, queries, Catalogue())
    app.dependency_overrides[command_bus] = lambda: buses.commands
    app.dependency_overrides[query_bus] = lambda: buses.queries
    client = TestClient(app)  # not `with`: the lifespan, which opens the services, never runs
    client.buses = buses  # type: ignore[attr-defined]
    yield client
    app.dependency_overrides.clear()
    buses.close()


def test_a_book_added_is_found_by_its_title(client: TestClient) -> None:
    added = client.post("/books", json={"title": "Dune", "author": "Frank Herbert"})
    assert added.status_code == 201
    position = added.json()["position"]
    stale = client.get("/books", params={"text": "dune", "min_position": position, "wait": 0})
    assert stale.status_code == 409  # nothing projected yet: a stale read
    client.buses.project()  # type: ignore[attr-defined]  # what the relay and workers do
    found = client.get("/books", params={"text": "dune", "min_position": position})
    assert found.status_code == 200
    assert [b["title"] for b in found.json()["items"]] == ["Dune"]


# --8<-- [end:override]


def test_bad_input_is_a_422_naming_the_field(client: TestClient) -> None:
    response = client.post("/books", json={"title": "", "author": "Frank Herbert"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["title"]
    missing = client.post(
        f"/books/{'0' * 8}-0000-4000-8000-{'0' * 12}/loans", json={"member_id": "m"}
    )
    assert missing.status_code == 404
    assert missing.json()["error"] == "AggregateNotFound"
