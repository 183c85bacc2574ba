"""Commands of the shop: what clients may ask, validated before anything runs."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, Field

from cqrskit import Command
from examples.shop.domain import Money, OrderLine, Quantity


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank (only whitespace)")
    return value


# Text a person must have written: refused when empty or only whitespace.
# Checked on commands only: events stored before this rule must still load.
NotBlank = AfterValidator(_not_blank)
Name = Annotated[str, Field(min_length=1, max_length=64), NotBlank]
Reason = Annotated[str, Field(min_length=1, max_length=500), NotBlank]


def _line_with_a_sku(line: OrderLine) -> OrderLine:
    if not line.sku.strip():
        raise ValueError("sku must not be blank (only whitespace)")
    return line


class PlaceOrder(Command):
    """Place an order for a customer."""

    customer_id: Name
    lines: list[Annotated[OrderLine, AfterValidator(_line_with_a_sku)]] = Field(
        min_length=1, max_length=100
    )


class CancelOrder(Command):
    """Cancel a placed order."""

    order_id: UUID
    reason: Reason


class RegisterItem(Command):
    """Start tracking stock of a product."""

    sku: Name
    name: Annotated[str, Field(min_length=1, max_length=200), NotBlank]
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
    reason: Reason
