"""Elasticsearch adapter: the client, error translation and the health probe."""

from __future__ import annotations

from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from cqrskit.backends._probe import ServiceInfo
from cqrskit.errors import ServiceUnavailable
from cqrskit.settings import Settings

__all__ = ["client", "probe"]

SERVICE = "Elasticsearch"
VARIABLE = "CQRSKIT_ELASTICSEARCH_URL"


def client(settings: Settings) -> Elasticsearch:
    """A client for the read-model cluster; connects lazily."""
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
    return Elasticsearch(
        settings.elasticsearch_url,
        request_timeout=settings.connect_timeout,
        max_retries=0,
        **auth,
    )


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
        raise ServiceUnavailable(
            SERVICE, settings.elasticsearch_address(), _reason(exc), VARIABLE
        ) from exc
    finally:
        es.close()
    version = ", ".join(sorted({str(n["version"]) for n in nodes["nodes"].values()})) or "?"
    detail = f"cluster {health['cluster_name']}, status {health['status']}"
    return ServiceInfo(SERVICE, settings.elasticsearch_address(), version, detail)


def _reason(exc: Exception) -> str:
    """The most specific words of a transport error: its cause's, if it has one."""
    cause = exc.__cause__ or exc.__context__
    text = str(cause) if cause is not None else str(exc)
    # urllib3 prefixes "HTTPConnection(host=..., port=...): " which we print anyway.
    return text.split("): ", 1)[-1] or type(exc).__name__
