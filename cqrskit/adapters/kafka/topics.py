"""The cluster's topics as the relay's status and repartitioning read them."""

from __future__ import annotations

from cqrskit.adapters.kafka._client import admin
from cqrskit.adapters.kafka._errors import translated
from cqrskit.settings import Settings

__all__ = ["topic_partitions"]


def topic_partitions(settings: Settings) -> dict[str, int]:
    """How many partitions each topic of the cluster has now.

    Raises:
        ServiceUnavailable: the cluster did not answer.
    """
    client = admin(settings)
    with translated(settings.kafka_bootstrap, client=client):
        metadata = client.list_topics(timeout=settings.connect_timeout)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}
