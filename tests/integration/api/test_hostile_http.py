"""Hostile HTTP bodies and paths: only validation errors come back, nothing is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cqrskit import Settings
from cqrskit.adapters import postgres as pg_backend
from examples.shop.api import create_app
from tests.hostile import (
    FRAGMENTS,
    SHOP_COMMANDS,
    Example,
    nothing_where_something_is_meant,
    payloads,
)
from tests.integration.conftest import init_schema


def _body(command: str, *path_fields: str) -> Example:
    """The example of ``command`` without the fields the route's path carries."""
    example = SHOP_COMMANDS[command]
    valid = {k: v for k, v in example.valid.items() if k not in path_fields}
    return Example(valid, example.zero_ok)


ROUTES = {
    "/orders": _body("PlaceOrder"),
    "/items": _body("RegisterItem"),
    "/orders/{id}/cancel": _body("CancelOrder", "order_id"),
    "/orders/{id}/payments": _body("AuthorisePayment", "order_id"),
    "/items/{id}/restock": _body("RestockItem", "item_id"),
    "/items/{id}/reservations": _body("ReserveStock", "item_id"),
}


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, postgres_up: None
) -> Iterator[tuple[TestClient, Settings]]:
    schema = f"t_hostile_{tmp_path_factory.getbasetemp().name.replace('-', '_')}"
    settings = Settings.load(postgres_schema=schema[:60])
    init_schema(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as http:
        yield http, settings
    with pg_backend.connect(settings) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{settings.postgres_schema}" CASCADE')


def stored(settings: Settings) -> int:
    with pg_backend.connect(settings) as conn:
        row = conn.execute(
            f'SELECT count(*) FROM "{settings.postgres_schema}".shop_events'
        ).fetchone()
    return int(row[0]) if row else 0


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, Any]:
    route = draw(st.sampled_from(sorted(ROUTES)))
    path_id = draw(
        st.one_of(st.uuids().map(str), st.sampled_from(FRAGMENTS), st.text(min_size=1, max_size=40))
    )
    path = route.replace("{id}", quote(path_id, safe=""))
    return path, draw(payloads(ROUTES[route]))


@settings(
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
)
@given(request_=requests())
def test_hostile_requests_get_validation_errors_and_store_nothing(
    client: tuple[TestClient, Settings], request_: tuple[str, Any]
) -> None:
    http, settings = client
    path, body = request_
    before = stored(settings)
    try:
        content = json.dumps(body)
    except (ValueError, RecursionError):
        content = "{" * 10_000  # what JSON cannot say: send it broken instead
    response = http.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code < 500, (path, response.text[:500])
    if response.status_code >= 300:
        assert stored(settings) == before, (path, response.status_code)
        assert response.json(), "an error answer says what was wrong"
    if response.status_code == 422:
        detail = response.json()
        assert "errors" in detail or "detail" in detail


@st.composite
def requests_with_nothing_where_something_is_meant(
    draw: st.DrawFn,
) -> tuple[str, tuple[str | int, ...], Any]:
    route = draw(st.sampled_from(sorted(ROUTES)))
    path, body = draw(nothing_where_something_is_meant(ROUTES[route]))
    return route.replace("{id}", str(draw(st.uuids()))), path, body


@settings(
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
)
@given(case=requests_with_nothing_where_something_is_meant())
@example(case=("/orders", ("lines",), {**ROUTES["/orders"].valid, "lines": []}))
@example(case=("/orders", ("customer_id",), {**ROUTES["/orders"].valid, "customer_id": ""}))
def test_empty_blank_null_and_non_positive_values_get_422_and_store_nothing(
    client: tuple[TestClient, Settings], case: tuple[str, tuple[str | int, ...], Any]
) -> None:
    """Issue 15, hole 9: {"customer_id": "ada", "lines": []} and "customer_id": ""
    answered 500; their kin (blanks, {}, 0, -1, null) must be refused too."""
    http, settings = client
    path, replaced, body = case
    before = stored(settings)
    response = http.post(path, json=body)
    assert response.status_code == 422, (path, body, response.status_code, response.text[:300])
    assert stored(settings) == before
    locs = [".".join(str(p) for p in d["loc"]) for d in response.json()["detail"]]
    top = str(replaced[0]) if replaced else ""
    assert any(top in loc for loc in locs), (replaced, locs)


def test_every_route_example_is_valid(client: tuple[TestClient, Settings]) -> None:
    """The examples the refusals start from are accepted: a refusal is the replaced value's."""
    http, _ = client
    for route, sample in ROUTES.items():
        response = http.post(route.replace("{id}", str(UUID(int=99))), json=sample.valid)
        assert response.status_code in (201, 404), (route, response.text[:300])
