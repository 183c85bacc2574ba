"""Aggregates of the shop. Plain Python with validated event payloads; no I/O."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from cqrskit import Aggregate, RuleViolated, event

Quantity = Annotated[int, Field(gt=0, le=1_000_000)]
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


class OrderLine(BaseModel):
    """One product and how many of it, at what unit price."""

    model_config = ConfigDict(frozen=True)

    sku: str = Field(min_length=1, max_length=64)
    quantity: Quantity
    unit_price: Money
    #: The inventory item to reserve for this line (the order workflow does).
    item_id: UUID | None = None


class Order(Aggregate):
    """A customer's order: placed, then paid or cancelled."""

    customer_id: str
    lines: list[OrderLine]
    status: str
    payment_id: UUID | None
    cancel_reason: str | None
    payment_refusal: str | None

    @event("Placed")
    def __init__(self, customer_id: str, lines: list[OrderLine]) -> None:
        if not lines:
            raise RuleViolated("an order needs at least one line")
        self.customer_id = customer_id
        self.lines = lines
        self.status = "placed"
        self.payment_id = None
        self.cancel_reason = None
        self.payment_refusal = None

    @property
    def total(self) -> Decimal:
        """Sum of quantity times unit price over the lines."""
        return sum((line.unit_price * line.quantity for line in self.lines), Decimal(0))

    def cancel(self, reason: str) -> None:
        """Cancel a placed order; a paid or cancelled one cannot be."""
        if self.status != "placed":
            raise RuleViolated(f"order {self.id} is {self.status} and cannot be cancelled")
        self._cancelled(reason=reason, customer_id=self.customer_id, total=self.total)

    # Events carry what their readers need (customer, total), so projections
    # never have to look anything up.
    @event("Cancelled")
    def _cancelled(self, reason: str, customer_id: str, total: Money) -> None:
        self.status = "cancelled"
        self.cancel_reason = reason

    def refuse_payment(self, reason: str) -> None:
        """Record that the payment provider refused to pay for this order."""
        if self.status != "placed":
            raise RuleViolated(f"order {self.id} is {self.status}; its payment cannot be refused")
        self._payment_refused(reason=reason)

    @event("PaymentRefused")
    def _payment_refused(self, reason: str) -> None:
        self.payment_refusal = reason

    def mark_paid(self, payment_id: UUID) -> None:
        """Record the captured payment of a placed order."""
        if self.status != "placed":
            raise RuleViolated(f"order {self.id} is {self.status} and cannot be paid")
        self._paid(payment_id=payment_id, customer_id=self.customer_id, total=self.total)

    @event("Paid")
    def _paid(self, payment_id: UUID, customer_id: str, total: Money) -> None:
        self.status = "paid"
        self.payment_id = payment_id


class InventoryItem(Aggregate):
    """Stock of one product: on hand, and reserved per order."""

    sku: str
    name: str
    on_hand: int
    reservations: dict[str, int]

    @event("Registered")
    def __init__(self, sku: str, name: str, quantity: Annotated[int, Field(ge=0)]) -> None:
        self.sku = sku
        self.name = name
        self.on_hand = quantity
        self.reservations = {}

    @property
    def available(self) -> int:
        """On hand minus reserved."""
        return self.on_hand - sum(self.reservations.values())

    @event("Restocked")
    def restock(self, quantity: Quantity) -> None:
        """Add delivered stock."""
        self.on_hand += quantity

    def reserve(self, order_id: UUID, quantity: int) -> None:
        """Hold stock for an order; refused if not enough is available."""
        if str(order_id) in self.reservations:
            raise RuleViolated(f"stock of {self.sku} is already reserved for order {order_id}")
        if quantity > self.available:
            raise RuleViolated(
                f"only {self.available} of {self.sku} available, {quantity} requested"
            )
        self._reserved(order_id=order_id, quantity=quantity)

    @event("Reserved")
    def _reserved(self, order_id: UUID, quantity: Quantity) -> None:
        self.reservations[str(order_id)] = quantity

    def release(self, order_id: UUID) -> None:
        """Give back an order's reservation (compensation for a cancelled order)."""
        if str(order_id) not in self.reservations:
            raise RuleViolated(f"no stock of {self.sku} is reserved for order {order_id}")
        self._released(order_id=order_id, quantity=self.reservations[str(order_id)])

    @event("Released")
    def _released(self, order_id: UUID, quantity: int) -> None:
        del self.reservations[str(order_id)]


class Payment(Aggregate):
    """A payment for an order: authorised, then captured or voided."""

    order_id: UUID
    amount: Decimal
    status: str

    @event("Authorised")
    def __init__(self, order_id: UUID, amount: Money) -> None:
        self.order_id = order_id
        self.amount = amount
        self.status = "authorised"

    def capture(self) -> None:
        """Take the authorised money."""
        if self.status != "authorised":
            raise RuleViolated(f"payment {self.id} is {self.status} and cannot be captured")
        self._captured()

    @event("Captured")
    def _captured(self) -> None:
        self.status = "captured"
