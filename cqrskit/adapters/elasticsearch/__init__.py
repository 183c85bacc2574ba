"""Elasticsearch adapter: the client, its serializers, error translation and the probe."""

from cqrskit.adapters.elasticsearch._client import (
    OrjsonNdjsonSerializer,
    OrjsonSerializer,
    async_client,
    client,
    probe,
)
from cqrskit.adapters.elasticsearch._errors import (
    SERVICE,
    VARIABLE,
    busy,
    reason_of,
    translated,
    unavailable,
)

__all__ = [
    "SERVICE",
    "VARIABLE",
    "OrjsonNdjsonSerializer",
    "OrjsonSerializer",
    "async_client",
    "busy",
    "client",
    "probe",
    "reason_of",
    "translated",
    "unavailable",
]
