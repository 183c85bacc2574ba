"""The relay's fast path puts the same bytes on the wire as the encoder it replaced.

The reference below is the relay's per-event code as it was before the fast
path (``encode`` and the key, headers and topic built in ``_send``), frozen
here. Every message the relay hands to the producer now must equal, byte for
byte and in the same order, the message the reference builds for the same
stored event: topic, key, value (the envelope's JSON) and headers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast
from uuid import UUID, uuid4

import orjson
import pytest
from confluent_kafka import KafkaError, Message

from cqrskit import Settings
from cqrskit.domain import CausationContext, causation
from cqrskit.envelope import (
    HEADER_EVENT_TYPE,
    HEADER_POSITION,
    HEADER_TRACEPARENT,
    Envelope,
    encode,
    encode_envelope,
)
from cqrskit.eventstore import OrjsonTranscoder, PydanticMapper, Upcasters
from cqrskit.relay import KafkaPublisher, OutboxRelay, OutboxRow
from examples.shop import InventoryItem, Order, OrderLine, Payment

Headers = list[tuple[str, str | bytes | None]]
#: (Kafka topic, key, value, headers), as handed to the producer.
Wire = tuple[str, bytes, bytes, Headers]

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


# -- the reference: the relay's per-event code before the fast path -------------


def reference_encode(
    *, position: int, aggregate_id: UUID | str, aggregate_version: int, topic: str, state: bytes
) -> tuple[bytes, str, str, str | None]:
    payload: dict[str, Any] = orjson.loads(state)
    metadata = payload.pop("metadata", None) or {}
    occurred_at = payload.pop("timestamp", None)
    payload.pop("originator_topic", None)
    qualname = topic.rpartition(":")[2]
    aggregate_type = qualname.rpartition(".")[0] or qualname
    event_type = qualname
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


def reference_wire(settings: Settings, row: OutboxRow) -> Wire:
    position, aggregate_id, version, event_topic, state = row
    value, event_type, aggregate_type, traceparent = reference_encode(
        position=position,
        aggregate_id=aggregate_id,
        aggregate_version=version,
        topic=event_topic,
        state=state,
    )
    prefix = settings.topic_prefix or "shop"
    if settings.topic_layout == "per-application":
        topic = f"{prefix}.events"
    else:
        topic = f"{prefix}.{aggregate_type.lower()}"
    headers: Headers = [
        (HEADER_EVENT_TYPE, event_type.encode()),
        (HEADER_POSITION, b"%d" % position),
    ]
    if traceparent:
        headers.append((HEADER_TRACEPARENT, traceparent.encode()))
    return topic, aggregate_id.encode(), value, headers


# -- stored events: from the real mapper, and written by hand ----------------------

MAPPER = PydanticMapper(OrjsonTranscoder())
LINES = [OrderLine(sku="tea", quantity=2, unit_price=Decimal("3.50"))]


def stored_rows(*aggregates: Any) -> list[tuple[str, int, str, bytes]]:
    """(aggregate id, version, class topic, state) of the aggregates' new events."""
    rows = []
    for aggregate in aggregates:
        for event in aggregate.collect_events():
            stored = MAPPER.to_stored_event(event)
            rows.append(
                (str(stored.originator_id), stored.originator_version, stored.topic, stored.state)
            )
    return rows


def domain_rows() -> list[tuple[str, int, str, bytes]]:
    plain = Order(customer_id="ada", lines=LINES)
    plain.cancel("changed my mind")
    unicode = Order(customer_id='Zoë 北京 🚀 "quoted" back\\slash\ttab', lines=LINES)
    context = CausationContext(
        correlation_id=uuid4(), causation_id=uuid4(), traceparent=TRACEPARENT
    )
    with causation(context):
        traced = Order(customer_id="grace", lines=LINES)
        item = InventoryItem(sku="tea", name="Thé vert — 緑茶", quantity=5)
        item.reserve(traced.id, 2)
        payment = Payment(order_id=traced.id, amount=Decimal("7.00"))
        payment.capture()
    untraced = CausationContext(correlation_id=uuid4())
    with causation(untraced):
        correlated = Order(customer_id="linus", lines=LINES)
    return stored_rows(plain, unicode, traced, item, payment, correlated)


def upcast_rows() -> list[tuple[str, int, str, bytes]]:
    """An event stored at version 1 and the same event as an upcaster lifts it to 2."""
    upcasters = Upcasters()

    @upcasters.register(Order.Placed, from_version=1)  # type: ignore[attr-defined]
    def add_currency(state: dict[str, Any]) -> dict[str, Any]:
        return {**state, "currency": "EUR"}

    (aggregate_id, version, topic, state), *_ = stored_rows(Order(customer_id="ada", lines=LINES))
    lifted = upcasters.upcast(topic, orjson.loads(state), to_version=2)
    return [
        (aggregate_id, version, topic, state),
        (aggregate_id, version, topic, orjson.dumps(lifted)),
    ]


def hand_written_rows() -> list[tuple[str, int, str, bytes]]:
    """Stored states the mapper does not write today but the store may hold."""
    aggregate_id = str(uuid4())
    event_id = str(uuid4())
    full_metadata = {
        "event_id": event_id,
        "schema_version": 3,
        "correlation_id": str(uuid4()),
        "causation_id": None,
        "traceparent": TRACEPARENT,
        "extra": "kept out of the envelope",
    }
    states: list[tuple[str, dict[str, Any]]] = [
        ("examples.shop.domain:Order.Placed", {"customer_id": "no metadata, no timestamp"}),
        ("examples.shop.domain:Order.Placed", {"metadata": None, "timestamp": None, "x": 1}),
        ("examples.shop.domain:Order.Placed", {"metadata": {}, "lines": []}),
        (
            "examples.shop.domain:Order.Placed",
            {
                "timestamp": "2026-12-02T06:06:24.054156Z",
                "originator_topic": "examples.shop.domain:Order",
                "metadata": full_metadata,
                "nested": {"ünï": ["ç", 1.5, -0.0, 1e300, 2**62, True, None, {"deep": "\u2028"}]},
                "empty": "",
            },
        ),
        (
            "examples.shop.domain:Order.Placed",
            {"metadata": {"traceparent": ""}, "note": "an empty traceparent is no header"},
        ),
        # A class topic without a module part and a qualname without a dot.
        ("Standalone", {"metadata": {"event_id": event_id}, "payload": {"a": [1, 2]}}),
        ("some.module:Created", {"metadata": {"schema_version": 2}, "v": "x" * 3000}),
        ("some.module:Outer.Inner.Happened", {"metadata": {}, "k": "nested qualname"}),
    ]
    return [
        (aggregate_id, n, topic, orjson.dumps(state)) for n, (topic, state) in enumerate(states)
    ]


def outbox_rows() -> list[OutboxRow]:
    stored = domain_rows() + upcast_rows() + hand_written_rows()
    return [
        (position, aggregate_id, version, topic, state)
        for position, (aggregate_id, version, topic, state) in enumerate(
            stored,
            start=2**31 - len(stored) // 2,  # positions past 32 bits, too
        )
    ]


# -- the relay's side, with a producer that records instead of sending ------------


@dataclass
class RecordingPublisher:
    """What the relay needs of a KafkaPublisher; records every message it is given."""

    #: Raise BufferError on these calls to ``enqueue`` (0-based), as a full queue does.
    full_on: set[int] = field(default_factory=set)
    sent: list[Wire] = field(default_factory=list)
    acks: list[Callable[[KafkaError | None, Message], None]] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    calls: int = 0

    @property
    def enqueue(self) -> Callable[..., None]:
        return self._enqueue

    def _enqueue(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        *,
        headers: Headers,
        on_delivery: Callable[[KafkaError | None, Message], None],
    ) -> None:
        self.calls += 1
        if self.calls - 1 in self.full_on:
            raise BufferError("Local: Queue full")
        self.sent.append((topic, key, value, list(headers)))
        self.acks.append(on_delivery)

    def produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: Headers,
        on_delivery: Callable[[KafkaError | None, Message], None],
    ) -> None:
        self.sent.append((topic, key, value, list(headers)))
        self.acks.append(on_delivery)

    def ensure_topic(self, topic: str) -> None:
        self.topics.append(topic)


SETTINGS = [
    Settings(),
    Settings(topic_prefix="custom", topic_layout="per-application"),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=["per-aggregate", "per-application"])
def test_the_relay_sends_the_bytes_the_previous_encoder_sent(settings: Settings) -> None:
    rows = outbox_rows()
    publisher = RecordingPublisher()
    page = OutboxRelay(settings, "shop")._send(cast(KafkaPublisher, publisher), rows)
    assert publisher.sent == [reference_wire(settings, row) for row in rows]
    assert page.last == rows[-1][0]
    assert page.outstanding == page.size == len(rows)
    # Every topic is checked before its first message, once per event class.
    assert set(publisher.topics) == {wire[0] for wire in publisher.sent}
    assert len(publisher.topics) == len({row[3] for row in rows})


def test_a_full_producer_queue_keeps_every_message_and_their_order() -> None:
    rows = outbox_rows()
    publisher = RecordingPublisher(full_on={0, 3, 4, len(rows) - 1})
    page = OutboxRelay(Settings(), "shop")._send(cast(KafkaPublisher, publisher), rows)
    assert publisher.sent == [reference_wire(Settings(), row) for row in rows]
    for ack in publisher.acks:
        ack(None, cast(Message, None))
    assert page.outstanding == 0
    assert page.error is None


def test_a_second_page_reuses_what_the_first_learned() -> None:
    rows = outbox_rows()
    publisher = RecordingPublisher()
    relay = OutboxRelay(Settings(), "shop")
    relay._send(cast(KafkaPublisher, publisher), rows[:5])
    relay._send(cast(KafkaPublisher, publisher), rows[5:])
    assert publisher.sent == [reference_wire(Settings(), row) for row in rows]


def test_encode_and_encode_envelope_give_the_reference_bytes() -> None:
    for position, aggregate_id, version, topic, state in outbox_rows():
        expected = reference_encode(
            position=position,
            aggregate_id=aggregate_id,
            aggregate_version=version,
            topic=topic,
            state=state,
        )
        for given_id in (aggregate_id, UUID(aggregate_id)):
            assert (
                encode(
                    position=position,
                    aggregate_id=given_id,
                    aggregate_version=version,
                    topic=topic,
                    state=state,
                )
                == expected
            )
        value, event_type, aggregate_type, traceparent = expected
        assert encode_envelope(
            position, aggregate_id, version, topic, event_type, aggregate_type, state
        ) == (value, traceparent)


def test_the_envelopes_of_domain_events_decode() -> None:
    # A guard on the test data itself: the mapper's events are valid envelopes.
    for position, (aggregate_id, version, topic, state) in enumerate(domain_rows(), start=1):
        value, *_ = encode(
            position=position,
            aggregate_id=aggregate_id,
            aggregate_version=version,
            topic=topic,
            state=state,
        )
        envelope = Envelope.decode(value)
        assert envelope.position == position
        assert str(envelope.aggregate_id) == aggregate_id
