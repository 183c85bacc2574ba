"""Commands of the shop: what clients may ask, validated before anything runs."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from cqrskit import Command
from examples.shop.domain import Money, OrderLine, Quantity


class PlaceOrder(Command):
    """Place an order for a customer."""

    customer_id: str = Field(min_length=1, max_length=64)
    lines: list[OrderLine] = Field(min_length=1, max_length=100)


class CancelOrder(Command):
    """Cancel a placed order."""

    order_id: UUID
    reason: str = Field(min_length=1, max_length=500)


class RegisterItem(Command):
    """Start tracking stock of a product."""

    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    quantity: int = Field(ge=0)


class RestockItem(Command):
    """Add delivered stock."""

    item_id: UUID
    quantity: Quantity


class ReserveStock(Command):
    """Hold stock of an item for an order."""

    item_id: UUID
    order_id: UUID
    quantity: Quantity


class ReleaseStock(Command):
    """Give back an order's reservation."""

    item_id: UUID
    order_id: UUID


class AuthorisePayment(Command):
    """Authorise the payment of an order's total."""

    order_id: UUID
    amount: Money


class CapturePayment(Command):
    """Capture an authorised payment and mark its order paid."""

    payment_id: UUID


class RefusePayment(Command):
    """The payment provider declined to pay for an order."""

    order_id: UUID
    reason: str = Field(min_length=1, max_length=500)
