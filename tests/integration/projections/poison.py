"""A projection whose handler fails on one customer, while the environment says so."""

from __future__ import annotations

import os

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.projections import Projection, handles


class Note(BaseModel):
    order_id: str
    customer_id: str


class PoisonNotes(Projection[Note]):
    name = "poison_notes"
    view = Note

    @handles("Order.Placed")
    def placed(self, event: Envelope, doc: Note | None) -> Note:
        if event.payload["customer_id"] == "poison" and os.environ.get("POISON_IS_POISONOUS"):
            raise ValueError("poison is not edible")
        return Note(order_id=str(event.aggregate_id), customer_id=event.payload["customer_id"])
