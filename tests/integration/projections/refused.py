"""Projections whose documents Elasticsearch refuses: a field mapped as a number that
a handler fills with text, and a view that gained a field under a strict mapping."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.projections import Projection, handles


class LastSku(BaseModel):
    customer_id: str
    orders: int = 0
    last_sku: str = ""


class LastSkus(Projection[LastSku]):
    name = "last_skus"
    view = LastSku
    # SKUs were numbers once; a text SKU does not parse as one.
    mapping_overrides: ClassVar[dict[str, dict[str, Any]]] = {"last_sku": {"type": "long"}}

    def doc_id(self, event: Envelope) -> str:
        return str(event.payload["customer_id"])

    @handles("Order.Placed")
    def placed(self, event: Envelope, doc: LastSku | None) -> LastSku:
        doc = doc or LastSku(customer_id=event.payload["customer_id"])
        sku = str(event.payload["lines"][0]["sku"])
        return doc.model_copy(update={"orders": doc.orders + 1, "last_sku": sku})


class Tab(BaseModel):
    order_id: str
    customer_id: str


class TabWithNote(Tab):
    note: str | None = None


class Tabs(Projection[Tab]):
    name = "tabs"
    # The worker's code gained a field; the index was made by the code before.
    view = TabWithNote if os.environ.get("VIEW_GAINED_A_FIELD") else Tab

    @handles("Order.Placed")
    def placed(self, event: Envelope, doc: Tab | None) -> Tab:
        return self.view(order_id=str(event.aggregate_id), customer_id=event.payload["customer_id"])  # type: ignore[return-value]
