"""The shop over HTTP: commands in, queries out, with its OpenAPI document at /docs.

Run it with ``uvicorn --factory examples.shop.api:create_app``. Every
endpoint is ``async``: queries and read-your-writes waits await, commands
run on the command bus's own threads. Errors map to statuses in
``cqrskit.fastapi`` (one place); bad input is never a 500.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import FastAPI, Header, Query
from pydantic import BaseModel, ConfigDict

from cqrskit import CommandResult, Page, Settings
from cqrskit.fastapi import (
    COMMAND_RESPONSES,
    QUERY_RESPONSES,
    Commands,
    Cqrskit,
    Queries,
    ReadOptions,
)
from examples.shop.application import ShopApp, handlers
from examples.shop.commands import (
    AuthorisePayment,
    CancelOrder,
    CapturePayment,
    PlaceOrder,
    RegisterItem,
    ReserveStock,
    RestockItem,
)
from examples.shop.domain import OrderLine
from examples.shop.queries import (
    CustomerById,
    ListOrders,
    LowStock,
    OrderById,
    OrderStats,
    SearchProducts,
    StatusStats,
    queries,
)
from projections import CustomerOrders, OrderSummary, Product, StockLevel

IdempotencyKey = Annotated[str | None, Header(max_length=200)]


class PlaceOrderBody(BaseModel):
    customer_id: str
    lines: list[OrderLine]


class CancelBody(BaseModel):
    reason: str


class PaymentBody(BaseModel):
    amount: Decimal


class RestockBody(BaseModel):
    quantity: int


class ReserveBody(BaseModel):
    order_id: UUID
    quantity: int


# A query's HTTP form: FastAPI binds every query parameter to the model, so
# the read-your-writes ones are ignored there rather than refused.
class ListOrdersParams(ListOrders):
    model_config = ConfigDict(extra="ignore")


class SearchProductsParams(SearchProducts):
    model_config = ConfigDict(extra="ignore")


class LowStockParams(LowStock):
    model_config = ConfigDict(extra="ignore")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The shop's HTTP API, on the services ``settings`` name (default: loaded at start)."""
    kit = Cqrskit(ShopApp, handlers, queries, settings)
    app = FastAPI(title="cqrskit shop", version="1.0", lifespan=kit.lifespan)
    kit.install(app)

    @app.post("/orders", status_code=201, responses=COMMAND_RESPONSES)
    async def place_order(
        body: PlaceOrderBody, commands: Commands, idempotency_key: IdempotencyKey = None
    ) -> CommandResult:
        command = commands.build(PlaceOrder, **body.model_dump())
        return await commands.dispatch(command, idempotency_key=idempotency_key)

    @app.post("/orders/{order_id}/cancel", responses=COMMAND_RESPONSES)
    async def cancel_order(
        order_id: UUID, body: CancelBody, commands: Commands, idempotency_key: IdempotencyKey = None
    ) -> CommandResult:
        command = commands.build(CancelOrder, order_id=order_id, reason=body.reason)
        return await commands.dispatch(command, idempotency_key=idempotency_key)

    @app.post("/orders/{order_id}/payments", status_code=201, responses=COMMAND_RESPONSES)
    async def authorise(
        order_id: UUID,
        body: PaymentBody,
        commands: Commands,
        idempotency_key: IdempotencyKey = None,
    ) -> CommandResult:
        command = commands.build(AuthorisePayment, order_id=order_id, amount=body.amount)
        return await commands.dispatch(command, idempotency_key=idempotency_key)

    @app.post("/payments/{payment_id}/capture", responses=COMMAND_RESPONSES)
    async def capture(
        payment_id: UUID, commands: Commands, idempotency_key: IdempotencyKey = None
    ) -> CommandResult:
        command = commands.build(CapturePayment, payment_id=payment_id)
        return await commands.dispatch(command, idempotency_key=idempotency_key)

    @app.post("/items", status_code=201, responses=COMMAND_RESPONSES)
    async def register_item(
        body: RegisterItem, commands: Commands, idempotency_key: IdempotencyKey = None
    ) -> CommandResult:
        return await commands.dispatch(body, idempotency_key=idempotency_key)

    @app.post("/items/{item_id}/restock", responses=COMMAND_RESPONSES)
    async def restock(
        item_id: UUID, body: RestockBody, commands: Commands, idempotency_key: IdempotencyKey = None
    ) -> CommandResult:
        command = commands.build(RestockItem, item_id=item_id, quantity=body.quantity)
        return await commands.dispatch(command, idempotency_key=idempotency_key)

    @app.post("/items/{item_id}/reservations", responses=COMMAND_RESPONSES)
    async def reserve(
        item_id: UUID, body: ReserveBody, commands: Commands, idempotency_key: IdempotencyKey = None
    ) -> CommandResult:
        command = commands.build(ReserveStock, item_id=item_id, **body.model_dump())
        return await commands.dispatch(command, idempotency_key=idempotency_key)

    @app.get("/orders/stats", responses=QUERY_RESPONSES)
    async def stats(
        queries: Queries, read: ReadOptions, customer_id: str | None = None
    ) -> dict[str, StatusStats]:
        result: dict[str, StatusStats] = await read.ask(
            queries, OrderStats(customer_id=customer_id)
        )
        return result

    @app.get("/orders/{order_id}", responses=QUERY_RESPONSES)
    async def order(order_id: UUID, queries: Queries, read: ReadOptions) -> OrderSummary:
        result: OrderSummary = await read.one(queries, OrderById(order_id=order_id))
        return result

    @app.get("/orders", responses=QUERY_RESPONSES)
    async def list_orders(
        query: Annotated[ListOrdersParams, Query()],
        queries: Queries,
        read: ReadOptions,
    ) -> Page[OrderSummary]:
        return await read.page(queries, ListOrders(**query.model_dump()))

    @app.get("/customers/{customer_id}", responses=QUERY_RESPONSES)
    async def customer(customer_id: str, queries: Queries, read: ReadOptions) -> CustomerOrders:
        query = queries.handlers.parse(CustomerById, {"customer_id": customer_id})
        result: CustomerOrders = await read.one(queries, query)
        return result

    @app.get("/products", responses=QUERY_RESPONSES)
    async def products(
        query: Annotated[SearchProductsParams, Query()],
        queries: Queries,
        read: ReadOptions,
    ) -> Page[Product]:
        return await read.page(queries, SearchProducts(**query.model_dump()))

    @app.get("/stock/low", responses=QUERY_RESPONSES)
    async def low_stock(
        query: Annotated[LowStockParams, Query()],
        queries: Queries,
        read: ReadOptions,
    ) -> Page[StockLevel]:
        return await read.page(queries, LowStock(**query.model_dump()))

    return app
