"""The shop's queries, answered from the read models of ``projections/``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from cqrskit.queries import Page, Query, QueryHandlers, Read, Search
from projections import CustomerOrders, OrderSummary, Product, StockLevel

queries = QueryHandlers()


class OrderById(Query):
    """One order's summary."""

    order_id: UUID


class ListOrders(Query):
    """Orders, filtered and sorted, a page at a time."""

    customer_id: str | None = None
    status: Literal["placed", "paid", "cancelled"] | None = None
    sku: str | None = None
    min_total: Decimal | None = Field(default=None, ge=0)
    sort: Literal["placed_at", "-placed_at", "total", "-total"] = "-placed_at"
    page_size: int = Field(default=50, ge=1, le=500)
    cursor: str | None = None


class OrderStats(Query):
    """How many orders per status, and their totals."""

    customer_id: str | None = None


class StatusStats(BaseModel):
    """How many orders have one status, and their total."""

    orders: int
    total: float


class CustomerById(Query):
    """A customer's orders in numbers."""

    customer_id: str = Field(min_length=1, max_length=64)


class SearchProducts(Query):
    """Full-text search over product names."""

    text: str = Field(min_length=1, max_length=200)
    page_size: int = Field(default=20, ge=1, le=100)
    cursor: str | None = None


class LowStock(Query):
    """Items with at most this many available."""

    max_available: int = Field(default=5, ge=0)
    page_size: int = Field(default=50, ge=1, le=500)
    cursor: str | None = None


@queries.handles(OrderById, view="order_summaries", model=OrderSummary)
def order_by_id(query: OrderById, search: Search[OrderSummary]) -> Read[OrderSummary | None]:
    return search.get(str(query.order_id))


@queries.handles(ListOrders, view="order_summaries", model=OrderSummary)
def list_orders(query: ListOrders, search: Search[OrderSummary]) -> Read[Page[OrderSummary]]:
    return (
        search.where(customer_id=query.customer_id, status=query.status, skus=query.sku)
        .range("total", gte=query.min_total)
        .sort(query.sort)
        .page(query.page_size, query.cursor)
    )


@queries.handles(OrderStats, view="order_summaries", model=OrderSummary)
def order_stats(query: OrderStats, search: Search[OrderSummary]) -> Read[dict[str, StatusStats]]:
    by_status = {"terms": {"field": "status"}, "aggs": {"total": {"sum": {"field": "total"}}}}
    return (
        search.where(customer_id=query.customer_id)
        .aggregate({"by_status": by_status})
        .then(_per_status)
    )


def _per_status(found: dict[str, Any]) -> dict[str, StatusStats]:
    return {
        bucket["key"]: StatusStats(
            orders=bucket["doc_count"], total=round(bucket["total"]["value"], 2)
        )
        for bucket in found["by_status"]["buckets"]
    }


@queries.handles(CustomerById, view="customer_orders", model=CustomerOrders)
def customer_by_id(
    query: CustomerById, search: Search[CustomerOrders]
) -> Read[CustomerOrders | None]:
    return search.get(query.customer_id)


@queries.handles(SearchProducts, view="products", model=Product)
def search_products(query: SearchProducts, search: Search[Product]) -> Read[Page[Product]]:
    return search.text(query.text, "name").page(query.page_size, query.cursor)


@queries.handles(LowStock, view="stock_levels", model=StockLevel)
def low_stock(query: LowStock, search: Search[StockLevel]) -> Read[Page[StockLevel]]:
    return (
        search.range("available", lte=query.max_available)
        .sort("available", "sku")
        .page(query.page_size, query.cursor)
    )
