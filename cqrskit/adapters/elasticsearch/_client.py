"""Elasticsearch adapter: the client, error translation and the health probe."""

from __future__ import annotations

import json
from typing import Any

import orjson
from elastic_transport import TransportError
from elasticsearch import ApiError, AsyncElasticsearch, Elasticsearch
from elasticsearch.serializer import JsonSerializer, NdjsonSerializer

from cqrskit.adapters._probe import ServiceInfo
from cqrskit.adapters.elasticsearch._errors import SERVICE, reason_of, unavailable
from cqrskit.settings import Settings


def _dumps(serializer: JsonSerializer, data: Any) -> bytes:
    try:
        return orjson.dumps(data, default=serializer.default)
    except orjson.JSONEncodeError:
        # orjson is stricter than the standard library: non-string keys,
        # integers beyond 64 bits, lone surrogates. Those few take the slow way.
        return JsonSerializer.json_dumps(serializer, data)


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # NaN, say; raises as the client's own would


class OrjsonSerializer(JsonSerializer):
    """The client's JSON, encoded and decoded by orjson.

    The same output as the client's standard-library serializer for what
    read models and queries send (dates and datetimes as ISO 8601, UUIDs as
    strings, Decimals as numbers); what orjson refuses goes through the
    standard library instead, so nothing that worked before fails.
    """

    def json_dumps(self, data: Any) -> bytes:
        """``data`` as JSON."""
        return _dumps(self, data)

    def json_loads(self, data: bytes) -> Any:
        """The value of JSON ``data``."""
        return _loads(data)


class OrjsonNdjsonSerializer(NdjsonSerializer):
    """Newline-delimited JSON (bulk, multi-search) by orjson; see :class:`OrjsonSerializer`."""

    def json_dumps(self, data: Any) -> bytes:
        """One line's JSON."""
        return _dumps(self, data)

    def json_loads(self, data: bytes) -> Any:
        """The value of one line's JSON."""
        return _loads(data)


def _options(settings: Settings) -> dict[str, Any]:
    """What both clients are built with: address, credentials, time-outs and serializers."""
    auth: dict[str, Any] = {}
    if settings.elasticsearch_api_key is not None:
        auth["api_key"] = settings.elasticsearch_api_key.get_secret_value()
    elif settings.elasticsearch_username is not None:
        password = settings.elasticsearch_password
        auth["basic_auth"] = (
            settings.elasticsearch_username,
            password.get_secret_value() if password else "",
        )
    if settings.elasticsearch_url.startswith("https"):
        auth["verify_certs"] = settings.elasticsearch_verify_certs
        if settings.elasticsearch_ca_certs:
            auth["ca_certs"] = settings.elasticsearch_ca_certs
    return {
        "hosts": settings.elasticsearch_url,
        "request_timeout": settings.connect_timeout,
        "max_retries": 0,
        # The standard library's JSON took a tenth of a rebuild's time.
        "serializers": {
            OrjsonSerializer.mimetype: OrjsonSerializer(),
            OrjsonNdjsonSerializer.mimetype: OrjsonNdjsonSerializer(),
        },
        **auth,
    }


def client(settings: Settings) -> Elasticsearch:
    """A client for the read-model cluster; connects lazily."""
    return Elasticsearch(**_options(settings))


def async_client(settings: Settings) -> AsyncElasticsearch:
    """An asyncio client for the read-model cluster (on aiohttp); connects lazily.

    Create it inside the event loop that will use it, and ``await close()``.
    """
    return AsyncElasticsearch(**_options(settings))


def probe(settings: Settings) -> ServiceInfo:
    """Ask the cluster for its version and health.

    Raises:
        ServiceUnavailable: the cluster cannot be reached or answers with an
            error; names the URL and ``CQRSKIT_ELASTICSEARCH_URL``.
    """
    es = client(settings)
    try:
        # Not GET / (info): minimal distributions do not serve the root endpoint.
        health = es.cluster.health()
        nodes = es.nodes.info(node_id="_local", metric="_none")
    except (TransportError, ApiError) as exc:
        raise unavailable(settings.elasticsearch_address(), reason_of(exc)) from exc
    finally:
        es.close()
    version = ", ".join(sorted({str(n["version"]) for n in nodes["nodes"].values()})) or "?"
    detail = f"cluster {health['cluster_name']}, status {health['status']}"
    return ServiceInfo(SERVICE, settings.elasticsearch_address(), version, detail)
