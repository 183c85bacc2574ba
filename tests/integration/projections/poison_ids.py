"""A projection whose document ids cannot always be made: a rule reading a field
that events stored before it existed lack, and customers whose id Elasticsearch refuses."""

from __future__ import annotations

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.projections import Projection, handles


class Visit(BaseModel):
    customer_id: str
    orders: int = 0


class VisitsByCustomer(Projection[Visit]):
    name = "poison_ids"
    view = Visit

    def doc_id(self, event: Envelope) -> str:
        if event.payload["customer_id"] == "legacy":
            return str(event.payload["region"])  # not in events stored before regions
        return str(event.payload["customer_id"])

    @handles("Order.Placed")
    def placed(self, event: Envelope, doc: Visit | None) -> Visit:
        doc = doc or Visit(customer_id=event.payload["customer_id"])
        return doc.model_copy(update={"orders": doc.orders + 1})
