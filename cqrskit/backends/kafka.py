"""Kafka adapter: client configuration, error translation and the health probe."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from cqrskit.backends._kafka_protocol import metadata_version
from cqrskit.backends._probe import ServiceInfo
from cqrskit.errors import ServiceUnavailable
from cqrskit.settings import Settings

__all__ = ["admin", "base_config", "probe"]

SERVICE = "Kafka"
VARIABLE = "CQRSKIT_KAFKA_BOOTSTRAP"

# librdkafka prints connection failures to stderr by itself; routing them
# through logging keeps a command-line tool's output to what we say.
_librdkafka_log = logging.getLogger("cqrskit.kafka.librdkafka")


def base_config(settings: Settings) -> dict[str, Any]:
    """Client settings shared by every producer, consumer and admin client."""
    timeout_ms = int(settings.connect_timeout * 1000)
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "socket.connection.setup.timeout.ms": max(1000, timeout_ms),
        "logger": _librdkafka_log,
    }


def admin(settings: Settings) -> AdminClient:
    """An admin client for topic management and health checks."""
    return AdminClient(base_config(settings))


def probe(settings: Settings) -> ServiceInfo:
    """Fetch the cluster's metadata: id, brokers and feature level.

    Raises:
        ServiceUnavailable: no broker answered within the connect timeout;
            names the bootstrap list and ``CQRSKIT_KAFKA_BOOTSTRAP``.
    """
    client = admin(settings)
    try:
        cluster = client.describe_cluster(request_timeout=settings.connect_timeout).result(
            timeout=settings.connect_timeout
        )
    except (KafkaException, TimeoutError) as exc:
        raise ServiceUnavailable(SERVICE, settings.kafka_bootstrap, _reason(exc), VARIABLE) from exc
    brokers = len(cluster.nodes)
    detail = f"cluster {cluster.cluster_id}, {brokers} broker{'s' if brokers != 1 else ''}"
    node = cluster.nodes[0]
    try:
        feature = metadata_version(node.host, node.port, settings.connect_timeout)
    except (OSError, ValueError) as exc:
        feature, detail = None, f"{detail}; metadata.version unknown ({exc})"
    if feature is None:
        return ServiceInfo(SERVICE, settings.kafka_bootstrap, "unknown", detail)
    release = feature.split("-")[0]
    return ServiceInfo(
        SERVICE, settings.kafka_bootstrap, release, f"{detail}, metadata.version {feature}"
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args:
        error = exc.args[0]
        text = error.str() if hasattr(error, "str") else str(error)
        return str(text)
    return str(exc) or "no broker answered in time"
