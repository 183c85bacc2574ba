"""Kafka adapter: client configuration, error translation and the health probe."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from pydantic import SecretStr

from cqrskit.adapters._probe import ServiceInfo
from cqrskit.adapters.kafka._brokers import BROKERS
from cqrskit.adapters.kafka._errors import SERVICE, not_yet, serve_logs, translated, unavailable
from cqrskit.adapters.kafka._group import MemberTimeouts
from cqrskit.adapters.kafka._protocol import metadata_version
from cqrskit.errors import PermanentError
from cqrskit.settings import Settings

__all__ = [
    "admin",
    "base_config",
    "consumer_config",
    "create_topic",
    "headers_of",
    "partition_count",
    "probe",
]


#: How often every client reports its statistics, in which :data:`BROKERS`
#: sees a broker that was down come back (milliseconds).
STATISTICS_INTERVAL_MS = 5000


class _KnownWarnings(logging.Filter):
    """Drops librdkafka lines that cqrskit says better itself.

    Its warning that a setting we chose on purpose is experimental, and the
    fatal or transaction error of a message refused as too large: the relay names the
    event once, while librdkafka would repeat it on every retry.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "CONFWARN" in message and "gapless.guarantee is experimental" in message:
            return False
        # Under transactions the same refusal fails the transaction (TXNERR).
        refused = "Message size too large" in message
        return not (refused and ("FATAL" in message or "TXNERR" in message))


# librdkafka prints connection failures to stderr by itself, on every retry
# of every client: BROKERS folds them into one line per change of state,
# and hands its other lines to this logger.
logging.getLogger("cqrskit.kafka.librdkafka").addFilter(_KnownWarnings())


def base_config(settings: Settings) -> dict[str, Any]:
    """Client settings shared by every producer, consumer and admin client.

    Its log lines, errors and statistics go to :data:`BROKERS`; a client
    that needs its own ``error_cb`` or ``stats_cb`` passes them on to it.
    """
    timeout_ms = int(settings.connect_timeout * 1000)
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "socket.connection.setup.timeout.ms": max(1000, timeout_ms),
        "logger": BROKERS,
        "error_cb": BROKERS.error,
        "statistics.interval.ms": STATISTICS_INTERVAL_MS,
        "stats_cb": BROKERS.stats,
        "security.protocol": settings.kafka_security_protocol,
    }
    optional = {
        "sasl.mechanism": settings.kafka_sasl_mechanism,
        "sasl.username": settings.kafka_sasl_username,
        "sasl.password": settings.kafka_sasl_password,
        "ssl.ca.location": settings.kafka_ssl_ca_location,
        "ssl.certificate.location": settings.kafka_ssl_certificate_location,
        "ssl.key.location": settings.kafka_ssl_key_location,
        "ssl.key.password": settings.kafka_ssl_key_password,
    }
    for key, value in optional.items():
        if isinstance(value, SecretStr):
            config[key] = value.get_secret_value()
        elif value is not None:
            config[key] = value
    return config


def consumer_config(settings: Settings) -> dict[str, Any]:
    """Settings every consumer of the relay's topics must use.

    The relay publishes in transactions (docs/decisions/0008): what a
    leader that lost its lease still had queued is aborted, never committed,
    and only ``read_committed`` consumers skip it. librdkafka's default is
    the same, but a default is not a contract.
    """
    return {**base_config(settings), "isolation.level": "read_committed"}


def group_config(settings: Settings) -> dict[str, Any]:
    """Settings of a consumer in a group: how soon a silent member is replaced,
    and how much it prefetches.

    librdkafka heartbeats from a thread of its own, so a long batch does not
    count as silence; ``max.poll.interval.ms`` bounds that instead. Its
    prefetch queue is what a consumer's memory grows with on a backlog.
    """
    session_ms = int(settings.kafka_session_timeout * 1000)
    return {
        **consumer_config(settings),
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": max(1000, session_ms // 3),
        "queued.max.messages.kbytes": settings.kafka_consumer_queue_kbytes,
        # A subscribed topic that appears later (created by another process,
        # or not yet in the metadata when the group formed) joins within
        # seconds, not librdkafka's default of five minutes.
        "topic.metadata.refresh.interval.ms": 5000,
    }


def member_timeouts(settings: Settings) -> MemberTimeouts:
    """How a group member waits: for a steady group, for its consumer to
    close, for the cluster to answer a probe (decision 0015)."""
    return MemberTimeouts(
        patience=settings.kafka_rejoin_timeout,
        # A member that leaves cleanly is gone at once; one that cannot is
        # gone after the session timeout anyway.
        close_seconds=settings.kafka_session_timeout + settings.connect_timeout,
        probe_seconds=settings.connect_timeout,
    )


def admin(settings: Settings) -> AdminClient:
    """An admin client for topic management and health checks."""
    return AdminClient(base_config(settings))


def create_topic(
    client: AdminClient, settings: Settings, topic: str, partitions: int | None = None
) -> bool:
    """Create ``topic`` unless it exists; True if this call created it.

    Uses ``settings.topic_partitions`` (or ``partitions``) and
    ``settings.topic_replication``.

    Raises:
        ServiceUnavailable: the broker did not answer.
        PermanentError: the broker refused (bad name, too many replicas...).
    """
    timeout = settings.connect_timeout
    new = NewTopic(
        topic,
        num_partitions=partitions or settings.topic_partitions,
        replication_factor=settings.topic_replication,
    )
    try:
        client.create_topics([new], request_timeout=timeout)[topic].result(timeout=timeout * 2)
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        if not_yet(error):
            serve_logs(client)
            raise unavailable(settings.kafka_bootstrap, error.str(), f"creating {topic}") from exc
        raise PermanentError(f"cannot create topic {topic!r}: {error.str()}") from exc
    except TimeoutError as exc:
        serve_logs(client)
        raise unavailable(settings.kafka_bootstrap, "no answer", f"creating {topic}") from exc
    return True


def wait_for_topics(client: AdminClient, settings: Settings, topics: Sequence[str]) -> None:
    """Return once every topic of ``topics`` has its partitions in the cluster's metadata.

    A topic just created is not at once in every broker's metadata; a
    consumer group formed before it is would leave its partitions out.

    Raises:
        ServiceUnavailable: a topic was still missing after ``settings.connect_timeout`` x 6.
    """
    deadline = time.monotonic() + settings.connect_timeout * 6
    missing = list(topics)
    while missing:
        with translated(settings.kafka_bootstrap, client=client):
            known = client.list_topics(timeout=settings.connect_timeout).topics
        missing = [t for t in missing if t not in known or not known[t].partitions]
        if missing and time.monotonic() > deadline:
            raise unavailable(
                settings.kafka_bootstrap, "not yet in the metadata", f"waiting for topics {missing}"
            )
        if missing:
            time.sleep(0.2)  # polling the cluster's metadata for the topics to appear


def partition_count(client: AdminClient, settings: Settings, topic: str) -> int:
    """How many partitions ``topic`` has, once they are in the cluster's metadata.

    Raises:
        ServiceUnavailable: as :func:`wait_for_topics`.
    """
    wait_for_topics(client, settings, [topic])
    with translated(settings.kafka_bootstrap, client=client):
        metadata = client.list_topics(topic, timeout=settings.connect_timeout)
    return len(metadata.topics[topic].partitions)


def probe(settings: Settings) -> ServiceInfo:
    """Fetch the cluster's metadata: id, brokers and feature level.

    Raises:
        ServiceUnavailable: no broker answered within the connect timeout;
            names the bootstrap list and ``CQRSKIT_KAFKA_BOOTSTRAP``.
    """
    client = admin(settings)
    with translated(settings.kafka_bootstrap, client=client):
        cluster = client.describe_cluster(request_timeout=settings.connect_timeout).result(
            timeout=settings.connect_timeout
        )
    brokers = len(cluster.nodes)
    detail = f"cluster {cluster.cluster_id}, {brokers} broker{'s' if brokers != 1 else ''}"
    node = cluster.nodes[0]
    feature: str | None = None
    if settings.kafka_security_protocol != "PLAINTEXT":
        # The version probe speaks plain TCP; it would not pass TLS or SASL.
        detail = f"{detail}; {settings.kafka_security_protocol}"
    else:
        try:
            feature = metadata_version(node.host, node.port, settings.connect_timeout)
        except (OSError, ValueError) as exc:
            detail = f"{detail}; metadata.version unknown ({exc})"
    if feature is None:
        return ServiceInfo(SERVICE, settings.kafka_bootstrap, "unknown", detail)
    release = feature.split("-")[0]
    return ServiceInfo(
        SERVICE, settings.kafka_bootstrap, release, f"{detail}, metadata.version {feature}"
    )


def headers_of(message: Message) -> dict[str, bytes]:
    """A message's headers as a dict (the last value of a repeated name wins)."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {
        name: value if isinstance(value, bytes) else (value or "").encode() for name, value in pairs
    }
