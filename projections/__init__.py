"""The shop's read models, loaded by ``cqrskit projections ... --projections projections``."""

from projections.customers import CustomerOrders, CustomerOrdersProjection
from projections.orders import OrderSummaries, OrderSummary
from projections.products import Product, ProductSearch
from projections.stock import StockLevel, StockLevels

__all__ = [
    "CustomerOrders",
    "CustomerOrdersProjection",
    "OrderSummaries",
    "OrderSummary",
    "Product",
    "ProductSearch",
    "StockLevel",
    "StockLevels",
]
