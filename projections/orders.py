"""One document per order, joining the order's and its payment's state."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.projections import UNCHANGED, IndexSettings, Outcome, Projection, handles


class OrderSummary(BaseModel):
    """What an order page shows."""

    order_id: str
    customer_id: str = ""
    status: str = "unknown"
    total: Decimal = Decimal(0)
    items: int = 0
    skus: list[str] = []
    placed_at: datetime | None = None
    payment_id: str | None = None
    payment_status: str | None = None
    cancel_reason: str | None = None


def _order_of_payment(event: Envelope) -> str:
    return str(event.payload["order_id"])


class OrderSummaries(Projection[OrderSummary]):
    """Orders with their payment status, for order pages and back-office lists."""

    # --8<-- [start:settings]
    name = "order_summaries"
    view = OrderSummary
    # Order pages read their own writes: the worker makes what it applied
    # searchable within 200 ms. The index's own settings: one shard, no
    # replica (a single node), Elasticsearch's periodic refresh as usual.
    freshness = 0.2
    index_settings = IndexSettings(shards=1, replicas=0, refresh_interval="1s")
    # --8<-- [end:settings]

    @handles("Order.Placed")
    def placed(self, event: Envelope, doc: OrderSummary | None) -> Outcome:
        lines = event.payload["lines"]
        base = doc or OrderSummary(order_id=str(event.aggregate_id))
        return base.model_copy(
            update={
                "customer_id": event.payload["customer_id"],
                "status": "placed" if base.status == "unknown" else base.status,
                "total": sum(
                    (Decimal(str(li["unit_price"])) * li["quantity"] for li in lines), Decimal(0)
                ),
                "items": sum(li["quantity"] for li in lines),
                "skus": sorted({li["sku"] for li in lines}),
                "placed_at": event.occurred_at,
            }
        )

    @handles("Order.Cancelled")
    def cancelled(self, event: Envelope, doc: OrderSummary | None) -> Outcome:
        base = doc or OrderSummary(order_id=str(event.aggregate_id))
        return base.model_copy(
            update={"status": "cancelled", "cancel_reason": event.payload["reason"]}
        )

    @handles("Order.Paid")
    def paid(self, event: Envelope, doc: OrderSummary | None) -> Outcome:
        base = doc or OrderSummary(order_id=str(event.aggregate_id))
        return base.model_copy(
            update={
                "status": "paid",
                "payment_id": str(event.payload["payment_id"]),
                "payment_status": "captured",
            }
        )

    @handles("Payment.Authorised", doc_id=_order_of_payment)
    def authorised(self, event: Envelope, doc: OrderSummary | None) -> Outcome:
        base = doc or OrderSummary(order_id=_order_of_payment(event))
        if base.payment_status == "captured":
            return UNCHANGED  # the capture (on the order's own stream) came first
        return base.model_copy(
            update={"payment_id": str(event.aggregate_id), "payment_status": "authorised"}
        )
