"""What ``cqrskit teardown`` removes of an application in Kafka: its topics and groups.

The topics and consumer groups named as cqrskit names the application's
(:meth:`Topology.owns_topic`, :meth:`Topology.owns_group`): the events'
topics, the dead-letter topics, and the groups of its projections, rebuilds,
dead-letter replays and process managers. A topic of a longer prefix
(``shop.eu.order`` beside the prefix ``shop``) is not the application's.
"""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException

from cqrskit.adapters.kafka._client import admin
from cqrskit.adapters.kafka._errors import SERVICE, translated
from cqrskit.settings import Settings
from cqrskit.teardown import Removal
from cqrskit.topology import Topology

__all__ = ["removals", "remove"]


def removals(settings: Settings, application_name: str) -> list[Removal]:
    """The application's topics and consumer groups in the cluster now; reads only.

    Raises:
        ServiceUnavailable: the cluster did not answer.
    """
    topology = Topology.of(settings, application_name)
    client = admin(settings)
    timeout = settings.connect_timeout
    with translated(settings.kafka_bootstrap, "listing topics and groups"):
        topics = client.list_topics(timeout=timeout).topics
        groups = client.list_consumer_groups(request_timeout=timeout).result(timeout=timeout * 2)
    found = [
        Removal(SERVICE, "topic", name, f"{len(topics[name].partitions)} partitions")
        for name in sorted(topics)
        if topology.owns_topic(name)
    ]
    found += [
        Removal(SERVICE, "consumer group", g.group_id)
        for g in sorted(groups.valid, key=lambda g: g.group_id)
        if topology.owns_group(g.group_id)
    ]
    return found


def remove(settings: Settings, planned: Sequence[Removal]) -> None:
    """Delete the planned topics and groups, and wait until the cluster has.

    A topic or group already gone counts as removed.

    Raises:
        ServiceUnavailable: the cluster did not answer.
        PermanentError: the cluster refused (a group that still has members:
            stop the workers and saga runners first).
    """
    client = admin(settings)
    timeout = settings.connect_timeout * 6
    topics = [r.name for r in planned if r.kind == "topic"]
    groups = [r.name for r in planned if r.kind == "consumer group"]
    with translated(settings.kafka_bootstrap, "deleting", refusals=True):
        futures = {}
        if groups:
            futures.update(client.delete_consumer_groups(groups, request_timeout=timeout))
        if topics:
            futures.update(client.delete_topics(topics, operation_timeout=timeout))
        for future in futures.values():
            try:
                future.result(timeout=timeout * 2)
            except KafkaException as exc:
                if not _gone(exc):
                    raise


def _gone(exc: KafkaException) -> bool:
    """True when the refusal says the topic or group does not exist (any more)."""
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.code() in _GONE


_GONE = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.GROUP_ID_NOT_FOUND}
