"""Hostile HTTP bodies and paths: only validation errors come back, nothing is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqrskit import Settings
from cqrskit.backends import postgres as pg_backend
from examples.shop.api import create_app
from tests.hostile import FRAGMENTS, payloads

ROUTES = {
    "/orders": ["customer_id", "lines"],
    "/items": ["sku", "name", "quantity"],
    "/orders/{id}/cancel": ["reason"],
    "/orders/{id}/payments": ["amount"],
    "/items/{id}/restock": ["quantity"],
    "/items/{id}/reservations": ["order_id", "quantity"],
}


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, postgres_up: None
) -> Iterator[tuple[TestClient, Settings]]:
    schema = f"t_hostile_{tmp_path_factory.getbasetemp().name.replace('-', '_')}"
    settings = Settings.load(postgres_schema=schema[:60])
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
