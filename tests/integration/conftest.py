"""Fixtures on the real local services (``make services``); nothing is mocked.

Every test gets its own PostgreSQL schema, Kafka topic and Elasticsearch
index, so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from elasticsearch import Elasticsearch

from cqrskit import Settings, check_services
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters import postgres as pg_backend

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the item, so fixtures can tell a failed test in teardown."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def failed(request: pytest.FixtureRequest) -> bool:
    """True in a fixture's teardown when the test itself failed."""
    report = getattr(request.node, "report_call", None)
    return bool(report is not None and report.failed)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.load()


def _require(settings: Settings, service: str) -> None:
    (check,) = [c for c in check_services(settings) if c.service == service]
    if not check.ok:
        pytest.fail(
            f"this test needs the real {service} at {check.address} ({check.detail}); "
            "start the services with 'make services' (or 'cqrskit services up')"
        )


@pytest.fixture(scope="session")
def postgres_up(settings: Settings) -> None:
    _require(settings, "PostgreSQL")


@pytest.fixture(scope="session")
def kafka_up(settings: Settings) -> None:
    _require(settings, "Kafka")


@pytest.fixture(scope="session")
def elasticsearch_up(settings: Settings) -> None:
    _require(settings, "Elasticsearch")


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test uses: lowercase, safe for schemas, topics and indices."""
    test = "".join(ch if ch.isalnum() else "_" for ch in request.node.name.lower())[:30]
    return f"t_{test}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pg(
    settings: Settings, unique_name: str, postgres_up: None
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection whose search_path is a fresh schema, dropped afterwards."""
    with pg_backend.connect(settings) as conn:
        conn.execute(f'CREATE SCHEMA "{unique_name}"')
        conn.execute(f'SET search_path TO "{unique_name}"')
        try:
            yield conn
        finally:
            conn.execute(f'DROP SCHEMA "{unique_name}" CASCADE')


@pytest.fixture
def kafka_topic(settings: Settings, unique_name: str, kafka_up: None) -> Iterator[str]:
    """A fresh topic with 3 partitions, deleted afterwards."""
    admin: AdminClient = kafka_backend.admin(settings)
    admin.create_topics([NewTopic(unique_name, num_partitions=3, replication_factor=1)])[
        unique_name
    ].result(timeout=30)
    try:
        yield unique_name
    finally:
        admin.delete_topics([unique_name])[unique_name].result(timeout=30)


@pytest.fixture
def es(settings: Settings, elasticsearch_up: None) -> Iterator[Elasticsearch]:
    client = es_backend.client(settings).options(request_timeout=30)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def es_index(es: Elasticsearch, unique_name: str) -> Iterator[str]:
    """A fresh index name; the index is deleted afterwards if it was created."""
    try:
        yield unique_name
    finally:
        es.options(ignore_status=404).indices.delete(index=unique_name)


@pytest.fixture
def schema_settings(settings: Settings, unique_name: str, postgres_up: None) -> Iterator[Settings]:
    """Settings whose event store lives in a fresh schema, dropped afterwards."""
    yield settings.model_copy(update={"postgres_schema": unique_name})
    with pg_backend.connect(settings) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE')
