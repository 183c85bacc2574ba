"""The effectively-once core, on the in-memory read model."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel

from cqrskit.envelope import Envelope, encode
from cqrskit.eventstore import OrjsonTranscoder, PydanticMapper
from cqrskit.projections import DELETE, MemoryReadModel, Projection, fold, handles
from cqrskit.projections._applier import Applier
from cqrskit.projections._mapping import mapping_for
from examples.shop import Order, OrderLine, Payment
from projections import CustomerOrdersProjection, OrderSummaries
from tests.integration.projections.poison_ids import VisitsByCustomer

LINES = [OrderLine(sku="tea", quantity=2, unit_price=Decimal("3.50"))]
MAPPER = PydanticMapper(OrjsonTranscoder())


def envelopes_of(*aggregates: Any, start: int = 1) -> list[Envelope]:
    """The envelopes the relay would publish for these aggregates' new events."""
    result = []
    events = [e for a in aggregates for e in a.collect_events()]
    for offset, event in enumerate(events):
        stored = MAPPER.to_stored_event(event)
        value, *_ = encode(
            position=start + offset,
            aggregate_id=stored.originator_id,
            aggregate_version=stored.originator_version,
            topic=stored.topic,
            state=stored.state,
        )
        result.append(Envelope.decode(value))
    return result


def test_an_order_summary_joins_order_and_payment() -> None:
    order = Order(customer_id="ada", lines=LINES)
    history = envelopes_of(order)
    payment = Payment(order_id=order.id, amount=Decimal("7.00"))
    history += envelopes_of(payment, start=len(history) + 1)
    docs = fold(OrderSummaries(), history)
    summary = docs[str(order.id)]
    assert summary.model_dump()["payment_status"] == "authorised"
    assert summary.model_dump()["total"] == Decimal("7.00")


def test_a_redelivered_event_has_no_second_effect() -> None:
    orders = [Order(customer_id="ada", lines=LINES) for _ in range(3)]
    history = envelopes_of(*orders)
    once = fold(CustomerOrdersProjection(), history)
    twice = fold(CustomerOrdersProjection(), history + history[:2] + history)
    assert once == twice
    assert once["ada"].model_dump()["orders_placed"] == 3


class Note(BaseModel):
    note_id: str
    text: str


class Notes(Projection[Note]):
    name = "notes"
    view = Note
    broken = True

    @handles("Order.Placed")
    def placed(self, event: Envelope, doc: Note | None) -> Note:
        if self.broken and event.payload["customer_id"] == "poison":
            raise ValueError("cannot handle poison")
        return Note(note_id=str(event.aggregate_id), text=event.payload["customer_id"])

    @handles("Order.Cancelled")
    def cancelled(self, event: Envelope, doc: Note | None) -> Any:
        return DELETE


def test_a_failing_event_is_reported_once_and_replayable() -> None:
    good, bad = Order(customer_id="ada", lines=LINES), Order(customer_id="poison", lines=LINES)
    history = envelopes_of(good, bad)
    store = MemoryReadModel()
    projection = Notes()
    applier = Applier(projection, store, retries=3)
    failures = applier.apply(history)
    assert [f.envelope.aggregate_id for f in failures] == [bad.id]
    assert "cannot handle poison" in failures[0].error
    assert set(store.views()) == {str(good.id)}
    assert applier.apply(history) == []  # redelivery: not failed twice
    projection.broken = False
    assert applier.apply([history[1]], replay=True) == []
    assert set(store.views()) == {str(good.id), str(bad.id)}


def test_a_deleted_document_stays_deleted_when_old_events_come_again() -> None:
    order = Order(customer_id="ada", lines=LINES)
    order.cancel("no")
    history = envelopes_of(order)
    store = MemoryReadModel()
    applier = Applier(Notes(), store, retries=1)
    applier.apply(history)
    applier.apply(history[:1])  # the Placed event again, after the delete
    assert store.views() == {}
    assert store.docs[str(order.id)].deleted


def test_mappings_follow_the_view_model() -> None:
    mapping = mapping_for(OrderSummaries.view)["properties"]
    assert mapping["customer_id"]["type"] == "keyword"
    assert mapping["total"]["type"] == "double"
    assert mapping["placed_at"]["type"] == "date"
    assert mapping["skus"]["type"] == "keyword"

    class Odd(BaseModel):
        value: int | str

    with pytest.raises(TypeError, match=r"Odd\.value"):
        mapping_for(Odd)


def test_every_projection_has_a_unique_id_rule() -> None:
    order_id = uuid4()
    (placed,) = envelopes_of(Order(customer_id="ada", lines=LINES))
    assert CustomerOrdersProjection().doc_id(placed) == "ada"
    assert OrderSummaries().doc_id(placed) == str(placed.aggregate_id) != str(order_id)


@pytest.mark.parametrize(
    "name", ["Orders", "orders;drop", "../orders", "orders*", "", "-orders", "a" * 101, "_all"]
)
def test_a_projection_name_that_is_not_a_safe_index_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="must be 1-100 characters"):
        type("Bad", (Projection,), {"name": name, "view": BaseModel})


class Tally(BaseModel):
    customer_id: str
    orders: int = 0
    lines: int = 0


class Tallies(Projection[Tally]):
    """Two handlers of one event type, both on the customer's document."""

    name = "tallies"
    view = Tally

    def doc_id(self, event: Envelope) -> str:
        return str(event.payload["customer_id"])

    @handles("Order.Placed")
    def count_order(self, event: Envelope, doc: Tally | None) -> Tally:
        doc = doc or Tally(customer_id=event.payload["customer_id"])
        return doc.model_copy(update={"orders": doc.orders + 1})

    @handles("Order.Placed")
    def count_lines(self, event: Envelope, doc: Tally | None) -> Tally:
        doc = doc or Tally(customer_id=event.payload["customer_id"])
        return doc.model_copy(update={"lines": doc.lines + len(event.payload["lines"])})


def test_every_handler_of_an_event_takes_effect_once_on_the_same_document() -> None:
    history = envelopes_of(*[Order(customer_id="ada", lines=LINES * 2) for _ in range(3)])
    store = MemoryReadModel()
    applier = Applier(Tallies(), store, retries=1)
    applier.apply(history)
    applier.apply(history)  # redelivered: still once each
    tally = store.views()["ada"].model_dump()
    assert (tally["orders"], tally["lines"]) == (3, 6)
    assert fold(Tallies(), history)["ada"].model_dump()["lines"] == 6


def test_an_event_whose_document_id_cannot_be_made_fails_alone() -> None:
    customers = ["ada", "legacy", "", "x" * 513, "é" * 257, "bob"]
    history = envelopes_of(*[Order(customer_id=c, lines=LINES) for c in customers])
    store = MemoryReadModel()
    failures = Applier(VisitsByCustomer(), store, retries=1).apply(history)
    assert set(store.views()) == {"ada", "bob"}
    reasons = {f.envelope.payload["customer_id"]: f.error for f in failures}
    assert reasons.keys() == {"legacy", "", "x" * 513, "é" * 257}
    assert "KeyError: 'region'" in reasons["legacy"]
    assert "empty" in reasons[""]
    assert "514 bytes" in reasons["é" * 257]


def test_an_event_is_marked_failed_only_after_its_dead_letter_is_kept() -> None:
    good, bad = Order(customer_id="ada", lines=LINES), Order(customer_id="poison", lines=LINES)
    history = envelopes_of(good, bad)
    store = MemoryReadModel()
    applier = Applier(Notes(), store, retries=1)

    def refused(failures: list[Any]) -> None:
        raise RuntimeError("the dead-letter topic refused")

    with pytest.raises(RuntimeError):
        applier.apply(history, dead_letter=refused)
    assert store.docs == {}  # nothing marked, so a redelivery fails it again
    kept: list[Any] = []
    failures = applier.apply(history, dead_letter=kept.extend)
    assert (
        [f.envelope.aggregate_id for f in kept]
        == [bad.id]
        == [f.envelope.aggregate_id for f in failures]
    )
    assert store.docs[str(bad.id)].failed
