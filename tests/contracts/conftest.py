"""Fixtures the contract suites share: the real services for the real adapters."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from cqrskit import Settings, check_services
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters.elasticsearch.read_model import ElasticsearchReadModel
from cqrskit.projections._mapping import mapping_for
from projections.customers import CustomerOrders


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.load()


@pytest.fixture
def es(settings: Settings) -> Iterator[Elasticsearch]:
    """A client of the real Elasticsearch (the test fails if it is not running)."""
    (check,) = [c for c in check_services(settings) if c.service == "Elasticsearch"]
    if not check.ok:
        pytest.fail(f"this test needs the real Elasticsearch at {check.address} ({check.detail})")
    client = es_backend.client(settings).options(request_timeout=30)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def es_read_model(es: Elasticsearch, settings: Settings, es_prefix: str) -> ElasticsearchReadModel:
    """The customers' read model on the real Elasticsearch, version 1 behind its alias."""
    model = ElasticsearchReadModel(
        es,
        settings.model_copy(update={"index_prefix": es_prefix}),
        "customers",
        CustomerOrders,
        mapping_for(CustomerOrders),
    )
    model.ensure()
    return model


@pytest.fixture
def es_prefix(es: Elasticsearch) -> Iterator[str]:
    """A fresh index prefix; every index under it is deleted afterwards."""
    prefix = f"c_{uuid.uuid4().hex[:10]}-"
    try:
        yield prefix
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{prefix}*")
