"""Kafka adapter: client configuration, error translation, group members and the probe."""

from cqrskit.adapters.kafka._client import (
    admin,
    base_config,
    consumer_config,
    create_topic,
    group_config,
    headers_of,
    member_timeouts,
    partition_count,
    probe,
    wait_for_topics,
)
from cqrskit.adapters.kafka._errors import (
    SERVICE,
    VARIABLE,
    describe_error,
    not_yet,
    translated,
    unavailable,
)

__all__ = [
    "SERVICE",
    "VARIABLE",
    "admin",
    "base_config",
    "consumer_config",
    "create_topic",
    "describe_error",
    "group_config",
    "headers_of",
    "member_timeouts",
    "not_yet",
    "partition_count",
    "probe",
    "translated",
    "unavailable",
    "wait_for_topics",
]
