"""The wire format: one JSON envelope per event, on Kafka and in replays.

::

    {
      "event_id": "7d1c…", "event_type": "Order.Placed", "schema_version": 1,
      "event_class": "examples.shop.domain:Order.Placed",
      "aggregate_id": "5b4d…", "aggregate_type": "Order", "aggregate_version": 1,
      "position": 1234, "occurred_at": "2026-11-23T18:49:08.304975Z",
      "payload": {"customer_id": "ada", "lines": […]},
      "metadata": {"correlation_id": "…", "causation_id": "…", "traceparent": "00-…"}
    }

``position`` is the event's global position in the store (its notification
id), increasing in commit order. Kafka messages carry the aggregate id as
key and repeat ``event_type``, ``position`` and ``traceparent`` as headers,
so a consumer can route or skip a message without decoding it.

This module imports no driver: the relay encodes with it, projection
workers decode with it.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict

__all__ = [
    "HEADER_EVENT_TYPE",
    "HEADER_POSITION",
    "HEADER_TRACEPARENT",
    "WATERMARK_EVENT_TYPE",
    "Envelope",
    "encode",
    "message_size",
]

HEADER_EVENT_TYPE = "event_type"
HEADER_POSITION = "position"
HEADER_TRACEPARENT = "traceparent"

#: The ``event_type`` header of the relay's watermark messages: not events,
#: but the promise that a partition holds no unseen event up to a position.
WATERMARK_EVENT_TYPE = "cqrskit.watermark"

#: The largest position (a PostgreSQL bigint): a size measured with it holds
#: at whatever position the event is stored.
_LARGEST_POSITION = 2**63 - 1


class EnvelopeMetadata(BaseModel):
    """Why the event happened: the ids that tie it to its cause and its trace."""

    model_config = ConfigDict(frozen=True)

    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    traceparent: str | None = None


class Envelope(BaseModel):
    """One event as it travels: identity, position, payload and metadata."""

    model_config = ConfigDict(frozen=True)

    event_id: UUID
    event_type: str
    event_class: str
    schema_version: int
    aggregate_id: UUID
    aggregate_type: str
    aggregate_version: int
    position: int
    occurred_at: datetime
    payload: dict[str, Any]
    metadata: EnvelopeMetadata

    @classmethod
    def decode(cls, data: bytes | str) -> Envelope:
        """Parse and validate one envelope.

        Raises:
            pydantic.ValidationError: the data is not an envelope.
        """
        return cls.model_validate_json(data)


@lru_cache(maxsize=4096)
def event_type_of(topic: str) -> tuple[str, str]:
    """(event type, aggregate type) from an event class topic ``module:Agg.Event``."""
    qualname = topic.rpartition(":")[2]
    aggregate_type, _, _ = qualname.rpartition(".")
    return qualname, aggregate_type or qualname


def encode(
    *,
    position: int,
    aggregate_id: UUID | str,
    aggregate_version: int,
    topic: str,
    state: bytes,
) -> tuple[bytes, str, str, str | None]:
    """Build the envelope of one stored event.

    Returns the envelope's JSON, the event type, the aggregate type and the
    traceparent (or None). Works on the stored JSON directly: no domain
    class is imported, so a relay needs none of the application's code.
    This runs once per published event, so it avoids every needless copy.
    """
    payload: dict[str, Any] = orjson.loads(state)
    metadata = payload.pop("metadata", None) or {}
    occurred_at = payload.pop("timestamp", None)
    payload.pop("originator_topic", None)
    event_type, aggregate_type = event_type_of(topic)
    traceparent = metadata.get("traceparent")
    envelope = {
        "event_id": metadata.get("event_id"),
        "event_type": event_type,
        "event_class": topic,
        "schema_version": metadata.get("schema_version", 1),
        "aggregate_id": aggregate_id if isinstance(aggregate_id, str) else str(aggregate_id),
        "aggregate_type": aggregate_type,
        "aggregate_version": aggregate_version,
        "position": position,
        "occurred_at": occurred_at,
        "payload": payload,
        "metadata": {
            "correlation_id": metadata.get("correlation_id"),
            "causation_id": metadata.get("causation_id"),
            "traceparent": traceparent,
        },
    }
    return orjson.dumps(envelope), event_type, aggregate_type, traceparent


def message_size(
    *, aggregate_id: UUID | str, aggregate_version: int, topic: str, state: bytes
) -> int:
    """Bytes of the Kafka message the relay makes of one stored event.

    Its value (the envelope), key and headers, the parts librdkafka counts
    against ``message.max.bytes``, with the position taken at its largest.
    """
    value, event_type, _, traceparent = encode(
        position=_LARGEST_POSITION,
        aggregate_id=aggregate_id,
        aggregate_version=aggregate_version,
        topic=topic,
        state=state,
    )
    headers = {
        HEADER_EVENT_TYPE: event_type,
        HEADER_POSITION: str(_LARGEST_POSITION),
        HEADER_TRACEPARENT: traceparent or "",
    }
    header_bytes = sum(len(k) + len(v.encode()) for k, v in headers.items() if v)
    return len(value) + len(str(aggregate_id)) + header_bytes
