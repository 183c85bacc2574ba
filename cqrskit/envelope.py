"""The wire format: one JSON envelope per event, on Kafka and in replays.

::

    {
      "event_id": "7d1c…", "event_type": "Order.Placed", "schema_version": 1,
      "event_class": "Order.Placed",
      "aggregate_id": "5b4d…", "aggregate_type": "Order", "aggregate_version": 1,
      "position": 1234, "occurred_at": "2026-11-23T18:49:08.304975Z",
      "payload": {"customer_id": "ada", "lines": […]},
      "metadata": {"correlation_id": "…", "causation_id": "…", "traceparent": "00-…"}
    }

``position`` is the event's global position in the store (its notification
id), increasing in commit order. ``event_class`` is the name the event is
stored under, as stored: its registered name, the same as ``event_type``,
or for events stored before names the module path of their class then
(``examples.shop.domain:Order.Placed``), whose ``event_type`` is the same
(decision 0021). Route by ``event_type``; never import ``event_class``.

Kafka messages carry the aggregate id as key and repeat ``event_type``,
``position`` and ``traceparent`` as headers, so a consumer can route or
skip a message without decoding it. The relay seals each message it
produces (header ``cqrskit.seal``, see :class:`Seal`), so a consumer
believes a message's position only when the relay wrote it.

This module imports no driver: the relay encodes with it, projection
workers decode with it.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, SecretStr

__all__ = [
    "HEADER_EVENT_TYPE",
    "HEADER_LAYOUT",
    "HEADER_POSITION",
    "HEADER_SEAL",
    "HEADER_TRACEPARENT",
    "WATERMARK_EVENT_TYPE",
    "Envelope",
    "Seal",
    "encode",
    "message_size",
]

#: The Kafka header that repeats the envelope's ``event_type``.
HEADER_EVENT_TYPE = "event_type"
#: The Kafka header that repeats the event's global ``position`` in the store.
HEADER_POSITION = "position"
#: The Kafka header that carries the event's W3C trace context.
HEADER_TRACEPARENT = "traceparent"
#: The Kafka header that carries the relay's :class:`Seal`: a worker applies
#: no message without a valid one, and believes no position it carries.
HEADER_SEAL = "cqrskit.seal"
#: On events published after a topic moved to more partitions:
#: ``<boundary position>:<previous partition count>``. A consumer applies
#: such an event only once every partition of the previous layout is
#: complete up to the boundary (docs/decisions/0009).
HEADER_LAYOUT = "layout"

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
    """(event type, aggregate type) of a stored name ``Agg.Event`` (or old ``module:Agg.Event``)."""
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


# The key when none is configured: it tells the relay's messages from those of
# any other producer, which is what accidents look like; a configured secret
# also stops a producer that read this code.
_BUILT_IN_KEY = b"cqrskit relay seal, v1"


class Seal:
    """A keyed digest the relay puts on each message, and that consumers check.

    It covers where the message was sent (the topic, and the key for an
    event or the partition for a watermark), the event type, the position
    and the value, so headers cannot be reused on another value, topic or
    aggregate; and it is keyed by the application, so one application's
    relay cannot vouch for another's positions. Keyed BLAKE2b: about a
    microsecond for an envelope, so a consumer can check messages it skips
    without decoding them.
    """

    def __init__(self, secret: SecretStr | None = None, application: str = ""):
        key = secret.get_secret_value().encode() if secret is not None else _BUILT_IN_KEY
        # The application is part of the key: applications that share a topic
        # prefix (one per environment, say) see each other's watermarks on
        # their topics, and a worker must not believe another store's positions.
        self._key = hashlib.blake2b(
            key + b"\0" + application.encode(), digest_size=32
        ).digest()  # any length fits

    def _digest(self, *parts: bytes) -> bytes:
        digest = hashlib.blake2b(key=self._key, digest_size=16)
        for part in parts:
            digest.update(b"%d:" % len(part))
            digest.update(part)
        return digest.digest()

    def event(
        self, topic: str, key: bytes, event_type: bytes, position: int, value: bytes
    ) -> bytes:
        """The seal of an event message (produced by key)."""
        return self._digest(b"event", topic.encode(), key, event_type, b"%d" % position, value)

    def watermark(self, topic: str, partition: int, position: int, value: bytes) -> bytes:
        """The seal of a watermark (produced to one partition)."""
        return self._digest(
            b"watermark", topic.encode(), b"%d" % partition, b"%d" % position, value
        )

    def verifies(  # noqa: PLR0913 - the fields of one consumed message, per message, unboxed
        self,
        seal: bytes | None,
        *,
        topic: str,
        partition: int,
        key: bytes | None,
        event_type: bytes,
        position: int,
        value: bytes,
    ) -> bool:
        """True if ``seal`` is the relay's for this message, as consumed."""
        if not seal:
            return False
        if event_type == WATERMARK_EVENT_TYPE.encode():
            expected = self.watermark(topic, partition, position, value)
        else:
            expected = self.event(topic, key or b"", event_type, position, value)
        return hmac.compare_digest(seal, expected)


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
    # The seal (a 16-byte digest) and, after a move onto more partitions,
    # the layout header ("<boundary>:<count>") come on top.
    header_bytes += len(HEADER_SEAL) + 16 + len(HEADER_LAYOUT) + 2 * len(str(_LARGEST_POSITION))
    return len(value) + len(str(aggregate_id)) + header_bytes
