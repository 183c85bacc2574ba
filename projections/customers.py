"""One document per customer: how many orders, and how much money."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.projections import Outcome, Projection, handles


class CustomerOrders(BaseModel):
    """A customer's orders in numbers."""

    customer_id: str
    orders_placed: int = 0
    orders_cancelled: int = 0
    orders_paid: int = 0
    amount_ordered: Decimal = Decimal(0)
    amount_paid: Decimal = Decimal(0)


def _customer(event: Envelope) -> str:
    return str(event.payload["customer_id"])


class CustomerOrdersProjection(Projection[CustomerOrders]):
    """Orders per customer with totals."""

    name = "customer_orders"
    view = CustomerOrders

    def doc_id(self, event: Envelope) -> str:
        return _customer(event)

    @staticmethod
    def _base(event: Envelope, doc: CustomerOrders | None) -> CustomerOrders:
        return doc or CustomerOrders(customer_id=_customer(event))

    @handles("Order.Placed")
    def placed(self, event: Envelope, doc: CustomerOrders | None) -> Outcome:
        base = self._base(event, doc)
        amount = sum(
            (Decimal(str(li["unit_price"])) * li["quantity"] for li in event.payload["lines"]),
            Decimal(0),
        )
        return base.model_copy(
            update={
                "orders_placed": base.orders_placed + 1,
                "amount_ordered": base.amount_ordered + amount,
            }
        )

    @handles("Order.Cancelled")
    def cancelled(self, event: Envelope, doc: CustomerOrders | None) -> Outcome:
        base = self._base(event, doc)
        return base.model_copy(update={"orders_cancelled": base.orders_cancelled + 1})

    @handles("Order.Paid")
    def paid(self, event: Envelope, doc: CustomerOrders | None) -> Outcome:
        base = self._base(event, doc)
        return base.model_copy(
            update={
                "orders_paid": base.orders_paid + 1,
                "amount_paid": base.amount_paid + Decimal(str(event.payload["total"])),
            }
        )
