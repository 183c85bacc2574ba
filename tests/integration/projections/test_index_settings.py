"""A projection's index settings: applied on create, and restored by a rebuild before the swap."""

from __future__ import annotations

from typing import Any

import pytest
from elasticsearch import Elasticsearch

from cqrskit import IndexSettings, Settings
from cqrskit.adapters.elasticsearch.read_model import ElasticsearchReadModel, read_model_for
from cqrskit.runtime import Runtime
from projections import CustomerOrdersProjection
from tests.integration.projections.conftest import Pipeline
from tests.integration.projections.test_rebuild import live_model


class SizedCustomers(CustomerOrdersProjection):
    """The customers' read model, two shards, a replica, a lazy refresh."""

    index_settings = IndexSettings(shards=2, replicas=1, refresh_interval="7s")


def index_settings(es: Elasticsearch, index: str) -> dict[str, Any]:
    found = es.indices.get_settings(index=index)[index]["settings"]["index"]
    return {
        "shards": found["number_of_shards"],
        "replicas": found["number_of_replicas"],
        "refresh": found.get("refresh_interval"),
    }


SERVING = {"shards": "2", "replicas": "1", "refresh": "7s"}


def test_an_index_is_created_with_the_projection_s_settings(
    settings: Settings, unique_name: str, es: Elasticsearch
) -> None:
    model = read_model_for(
        settings.model_copy(update={"index_prefix": f"{unique_name}-"}), SizedCustomers()
    )
    try:
        model.ensure()
        first = model.serving()
        assert first is not None
        assert index_settings(es, first) == SERVING
        loading = model.next_version()
        model.create_index(loading, alias=False, loading=True)
        assert index_settings(es, loading) == {"shards": "2", "replicas": "0", "refresh": "-1"}
        model.serve_settings(loading)
        assert index_settings(es, loading) == SERVING
    finally:
        es.indices.delete(index=f"{unique_name}-*")


def test_a_rebuild_loads_without_replicas_or_refresh_and_serves_with_them(
    pipeline: Pipeline, es: Elasticsearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    live_model(pipeline, orders=300)
    seen: list[dict[str, Any]] = []
    original = ElasticsearchReadModel.swap

    def swap(self: ElasticsearchReadModel, to_index: str) -> str | None:
        seen.append(index_settings(es, to_index))  # what the index has as it goes into service
        return original(self, to_index)

    monkeypatch.setattr(ElasticsearchReadModel, "swap", swap)
    result = Runtime(pipeline.settings).rebuild("shop", SizedCustomers())
    assert seen == [SERVING]
    assert index_settings(es, result.index) == SERVING
