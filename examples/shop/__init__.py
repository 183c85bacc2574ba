"""The example shop: orders, payments and inventory on cqrskit's public API."""

from examples.shop.application import ShopApp, handlers
from examples.shop.commands import (
    AuthorisePayment,
    CancelOrder,
    CapturePayment,
    PlaceOrder,
    RefusePayment,
    RegisterItem,
    ReleaseStock,
    ReserveStock,
    RestockItem,
)
from examples.shop.domain import InventoryItem, Order, OrderLine, Payment

__all__ = [
    "AuthorisePayment",
    "CancelOrder",
    "CapturePayment",
    "InventoryItem",
    "Order",
    "OrderLine",
    "Payment",
    "PlaceOrder",
    "RefusePayment",
    "RegisterItem",
    "ReleaseStock",
    "ReserveStock",
    "RestockItem",
    "ShopApp",
    "handlers",
]
