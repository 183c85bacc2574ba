"""The shop over HTTP: commands in, queries out, with its OpenAPI document at /docs.

Run it with ``uvicorn --factory examples.shop.api:create_app``. Errors map
to status codes in one place (``_ERRORS``); bad input is never a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from cqrskit import (
    AggregateNotFound,
    BadCursor,
    CommandBus,
    CommandRejected,
    CommandResult,
    ConcurrencyError,
    CqrskitError,
    IdempotencyKeyReused,
    QueryRejected,
    RuleViolated,
    ServiceUnavailable,
    Settings,
    StaleRead,
    UnknownCommand,
    UnknownQuery,
)
from cqrskit.commands import Command
from cqrskit.queries import Page, QueryBus
from cqrskit.queries import Query as CqrsQuery
from cqrskit.runtime import Runtime
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
    queries,
)
from projections import CustomerOrders, OrderSummary, Product, StockLevel

# Which error means which status: the one place that says it.
_ERRORS: list[tuple[type[CqrskitError], int]] = [
    (CommandRejected, 422),
    (QueryRejected, 422),
    (AggregateNotFound, 404),
    (RuleViolated, 409),
    (ConcurrencyError, 409),
    (IdempotencyKeyReused, 409),
    (StaleRead, 409),
    (BadCursor, 400),
    (UnknownCommand, 400),
    (UnknownQuery, 400),
    (ServiceUnavailable, 503),
]

StaleMode = Annotated[
    Literal["error", "flag"],
    Query(
        description="On a read that cannot wait for min_position: 409, or 200 with X-Stale: true"
    ),
]
Wait = Annotated[
    float | None,
    Query(ge=0, le=60, description="Seconds to wait for min_position (default: CQRSKIT_READ_WAIT)"),
]
MinPosition = Annotated[
    int | None,
    Query(ge=1, description="Wait until the read model applied this position (read your writes)"),
]


IdempotencyKey = Annotated[str | None, Header(max_length=200)]


class CancelBody(BaseModel):
    reason: str


class RestockBody(BaseModel):
    quantity: int


class ReserveBody(BaseModel):
    order_id: UUID
    quantity: int


class PaymentBody(BaseModel):
    amount: Decimal


class PlaceOrderBody(BaseModel):
    customer_id: str
    lines: list[OrderLine]


class ListOrdersParams(ListOrders):
    # FastAPI binds all query parameters to the model; min_position and stale
    # are the endpoint's own, so the HTTP form of a query ignores extras.
    model_config = ConfigDict(extra="ignore")


class SearchProductsParams(SearchProducts):
    model_config = ConfigDict(extra="ignore")


class LowStockParams(LowStock):
    model_config = ConfigDict(extra="ignore")


class NotFound(CqrskitError):
    """A read model has no document with that id."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The shop's HTTP API, on the services ``settings`` name."""
    settings = settings or Settings.load()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        application = ShopApp(settings)
        state["commands"] = CommandBus(application, handlers)
        state["queries"] = Runtime(settings).query_bus(queries)
        yield
        application.close()

    app = FastAPI(title="cqrskit shop", version="1.0", lifespan=lifespan)

    for error, status in _ERRORS:
        app.add_exception_handler(error, _handler(status))
    app.add_exception_handler(NotFound, _handler(404))
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(CqrskitError, _handler(500))

    def send(command_class: type[Command], key: str | None, **data: Any) -> CommandResult:
        # Every command is built here, from plain data, by the one parser that
        # turns a validation failure into CommandRejected (422 with the
        # fields): a command built in an endpoint raised pydantic's own error,
        # which no handler maps, and answered 500.
        bus: CommandBus = state["commands"]
        return bus.dispatch(_build(command_class, **data), idempotency_key=key)

    def ask(
        query: CqrsQuery, min_position: int | None, stale: str, wait: float | None = None
    ) -> tuple[Any, dict[str, str]]:
        bus: QueryBus = state["queries"]
        answer = bus.ask(
            query,
            min_position=min_position,
            on_stale="flag" if stale == "flag" else "error",
            wait=wait,
        )
        if answer.value is None:
            raise NotFound(f"no document for {query!r}")
        return answer.value, {"X-Stale": "true"} if answer.stale else {}

    @app.post("/orders", status_code=201)
    def place_order(body: PlaceOrderBody, idempotency_key: IdempotencyKey = None) -> CommandResult:
        return send(PlaceOrder, idempotency_key, **body.model_dump())

    @app.post("/orders/{order_id}/cancel")
    def cancel_order(
        order_id: UUID, body: CancelBody, idempotency_key: IdempotencyKey = None
    ) -> CommandResult:
        return send(CancelOrder, idempotency_key, order_id=order_id, reason=body.reason)

    @app.post("/orders/{order_id}/payments", status_code=201)
    def authorise(
        order_id: UUID, body: PaymentBody, idempotency_key: IdempotencyKey = None
    ) -> CommandResult:
        return send(AuthorisePayment, idempotency_key, order_id=order_id, amount=body.amount)

    @app.post("/payments/{payment_id}/capture")
    def capture(payment_id: UUID, idempotency_key: IdempotencyKey = None) -> CommandResult:
        return send(CapturePayment, idempotency_key, payment_id=payment_id)

    @app.post("/items", status_code=201)
    def register_item(body: RegisterItem, idempotency_key: IdempotencyKey = None) -> CommandResult:
        return send(RegisterItem, idempotency_key, **body.model_dump())

    @app.post("/items/{item_id}/restock")
    def restock(
        item_id: UUID, body: RestockBody, idempotency_key: IdempotencyKey = None
    ) -> CommandResult:
        return send(RestockItem, idempotency_key, item_id=item_id, quantity=body.quantity)

    @app.post("/items/{item_id}/reservations")
    def reserve(
        item_id: UUID, body: ReserveBody, idempotency_key: IdempotencyKey = None
    ) -> CommandResult:
        return send(
            ReserveStock,
            idempotency_key,
            item_id=item_id,
            order_id=body.order_id,
            quantity=body.quantity,
        )

    @app.get("/orders/stats")
    def stats(
        customer_id: str | None = None,
        min_position: MinPosition = None,
        stale: StaleMode = "error",
        wait: Wait = None,
    ) -> JSONResponse:
        value, headers = ask(OrderStats(customer_id=customer_id), min_position, stale, wait)
        return JSONResponse(value, headers=headers)

    @app.get("/orders/{order_id}", response_model=OrderSummary)
    def order(
        order_id: UUID,
        min_position: MinPosition = None,
        stale: StaleMode = "error",
        wait: Wait = None,
    ) -> JSONResponse:
        value, headers = ask(OrderById(order_id=order_id), min_position, stale, wait)
        return JSONResponse(value.model_dump(mode="json"), headers=headers)

    @app.get("/orders", response_model=Page[OrderSummary])
    def list_orders(
        query: Annotated[ListOrdersParams, Query()],
        min_position: MinPosition = None,
        stale: StaleMode = "error",
        wait: Wait = None,
    ) -> JSONResponse:
        value, headers = ask(ListOrders(**query.model_dump()), min_position, stale, wait)
        return JSONResponse(value.model_dump(mode="json"), headers=headers)

    @app.get("/customers/{customer_id}", response_model=CustomerOrders)
    def customer(
        customer_id: str,
        min_position: MinPosition = None,
        stale: StaleMode = "error",
        wait: Wait = None,
    ) -> JSONResponse:
        query = _build(CustomerById, customer_id=customer_id)
        value, headers = ask(query, min_position, stale, wait)
        return JSONResponse(value.model_dump(mode="json"), headers=headers)

    @app.get("/products", response_model=Page[Product])
    def products(
        query: Annotated[SearchProductsParams, Query()],
        min_position: MinPosition = None,
        stale: StaleMode = "error",
        wait: Wait = None,
    ) -> JSONResponse:
        value, headers = ask(SearchProducts(**query.model_dump()), min_position, stale, wait)
        return JSONResponse(value.model_dump(mode="json"), headers=headers)

    @app.get("/stock/low", response_model=Page[StockLevel])
    def low_stock(
        query: Annotated[LowStockParams, Query()],
        min_position: MinPosition = None,
        stale: StaleMode = "error",
        wait: Wait = None,
    ) -> JSONResponse:
        value, headers = ask(LowStock(**query.model_dump()), min_position, stale, wait)
        return JSONResponse(value.model_dump(mode="json"), headers=headers)

    return app


def _build(model: type[Any], **data: Any) -> Any:
    """Validate path and body together; a bad value is a 422 naming its field."""
    return (
        queries.parse(model, data)
        if issubclass(model, CqrsQuery)
        else handlers.parse(model.command_type, data)
    )


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """422 with each field's path and what was wrong; never echoes the input back.

    (The input may be huge, hostile, or not even representable in JSON, such
    as ``Infinity``.)
    """
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": [str(part) if not isinstance(part, int) else part for part in e["loc"]],
         "msg": str(e["msg"]), "type": str(e["type"])}
        for e in exc.errors()
    ]  # fmt: skip
    return JSONResponse(
        {"error": "RequestValidationError", "message": "the request is invalid", "detail": detail},
        status_code=422,
    )


def _handler(status: int) -> Any:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        body: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
        headers = {}
        if isinstance(exc, CommandRejected | QueryRejected):
            body["detail"] = [{"loc": e.path.split("."), "msg": e.message} for e in exc.errors]
        if isinstance(exc, StaleRead):
            body["stale"] = True
        if isinstance(exc, ServiceUnavailable):
            headers["Retry-After"] = "1"
        return JSONResponse(body, status_code=status, headers=headers)

    return handle
