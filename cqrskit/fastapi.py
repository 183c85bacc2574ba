"""Serving commands and read models from FastAPI (the ``[api]`` extra).

::

    kit = Cqrskit(ShopApp, handlers, queries)
    app = FastAPI(lifespan=kit.lifespan)
    kit.install(app)

    @app.get("/orders/{order_id}", responses=QUERY_RESPONSES)
    async def order(order_id: UUID, queries: Queries, read: ReadOptions) -> OrderSummary:
        return await read.one(queries, OrderById(order_id=order_id))

- :class:`Cqrskit` opens the clients in the app's lifespan (an
  :class:`~cqrskit.commands.AsyncCommandBus` and an
  :class:`~cqrskit.queries.AsyncQueryBus`) and closes them after;
- :data:`Commands` and :data:`Queries` are dependencies: a test replaces
  either with ``app.dependency_overrides[command_bus] = ...`` (or
  ``query_bus``), with no services at all;
- :data:`ReadOptions` adds read-your-writes to a query endpoint
  (``min_position``, ``stale``, ``wait``) and sets ``X-Stale``;
- :meth:`Cqrskit.install` maps the one error tree to HTTP in one place
  (:data:`STATUS_OF`), and :func:`responses` declares in OpenAPI each
  status with the body really sent.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from cqrskit.commands import AsyncCommandBus, CommandHandlers
from cqrskit.errors import (
    AggregateNotFound,
    BadCursor,
    CommandRejected,
    ConcurrencyError,
    CqrskitError,
    IdempotencyKeyReused,
    NotFound,
    QueryRejected,
    ReadRefused,
    RuleViolated,
    ServiceUnavailable,
    StaleRead,
)
from cqrskit.eventstore import Application
from cqrskit.queries import AsyncQueryBus, Page, QueryHandlers
from cqrskit.queries import Query as CqrsQuery
from cqrskit.runtime import Runtime
from cqrskit.settings import Settings

__all__ = [
    "COMMAND_RESPONSES",
    "QUERY_RESPONSES",
    "STATUS_OF",
    "Commands",
    "Cqrskit",
    "ErrorBody",
    "FieldProblem",
    "InvalidBody",
    "Queries",
    "ReadOptions",
    "ReadYourWrites",
    "StaleBody",
    "command_bus",
    "query_bus",
    "responses",
]

T = TypeVar("T")


# -- the bodies sent ---------------------------------------------------------------


class ErrorBody(BaseModel):
    """The body of every error response: the error's name and what went wrong."""

    # Nothing else is sent, and the OpenAPI document says so.
    model_config = ConfigDict(extra="forbid")

    error: str
    message: str


class FieldProblem(BaseModel):
    """One invalid field: where it is, and what is wrong with it."""

    model_config = ConfigDict(extra="forbid")

    loc: list[str | int]
    msg: str
    type: str


class InvalidBody(ErrorBody):
    """A 422: the request, a command or a query was invalid; every field named."""

    detail: list[FieldProblem]


class StaleBody(ErrorBody):
    """A 409 for a read-your-writes query that could not wait long enough."""

    stale: Literal[True] = True
    view: str
    position: int


#: Which error means which status, and the body each sends: the one place that says it.
STATUS_OF: list[tuple[type[Exception], int, type[ErrorBody]]] = [
    (RequestValidationError, 422, InvalidBody),
    (CommandRejected, 422, InvalidBody),
    (QueryRejected, 422, InvalidBody),
    (AggregateNotFound, 404, ErrorBody),
    (NotFound, 404, ErrorBody),
    (StaleRead, 409, StaleBody),
    (RuleViolated, 409, ErrorBody),
    (ConcurrencyError, 409, ErrorBody),
    (IdempotencyKeyReused, 409, ErrorBody),
    (BadCursor, 400, ErrorBody),
    (ReadRefused, 503, ErrorBody),
    (ServiceUnavailable, 503, ErrorBody),
    (CqrskitError, 500, ErrorBody),
]

_DESCRIPTIONS = {
    400: "A cursor this service did not issue, or one that expired",
    404: "No such aggregate, or no document answers the query",
    409: "The aggregate's rules or a concurrent change refused it, or the read was stale",
    422: "The request is invalid; each field is named",
    500: "An error of the service itself",
    503: "A service is unreachable, or the read model is protected for now: retry after",
}


_X_STALE = {
    "X-Stale": {
        "description": "true when the answer lacks the asked min_position (stale=flag)",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def responses(
    *statuses: int, bodies: dict[int, type[ErrorBody]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of an endpoint that may send ``statuses``.

    Each with the body schema :data:`STATUS_OF` sends: the one body of the
    status, or :class:`ErrorBody` where several errors share it (a command's
    409; ``bodies`` says which one an endpoint sends); and the headers:
    ``Retry-After`` on 503, ``X-Stale`` on a stale read's 409.
    """
    declared: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        sent = {body for _, code, body in STATUS_OF if code == status}
        body = (bodies or {}).get(status) or (sent.pop() if len(sent) == 1 else ErrorBody)
        entry: dict[str, Any] = {"model": body, "description": _DESCRIPTIONS[status]}
        if status == 503:
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds after which asking again may succeed",
                    "schema": {"type": "integer"},
                }
            }
        if body is StaleBody:
            entry["headers"] = _X_STALE
        declared[status] = entry
    return declared


#: What a command endpoint may send besides its success.
COMMAND_RESPONSES = responses(404, 409, 422, 500, 503)
#: What a query endpoint with :data:`ReadOptions` may send besides 200 (its 409: a stale read).
QUERY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The answer", "headers": _X_STALE},
    **responses(400, 404, 409, 422, 500, 503, bodies={409: StaleBody}),
}


def _body_of(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    status, kind = next((code, body) for cls, code, body in STATUS_OF if isinstance(exc, cls))
    body: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    headers: dict[str, str] = {}
    if isinstance(exc, RequestValidationError):
        body["message"] = "the request is invalid"
        # Never the input itself: it may be huge, hostile, or not even JSON.
        body["detail"] = [
            {
                "loc": [p if isinstance(p, int) else str(p) for p in e["loc"]],
                "msg": str(e["msg"]),
                "type": str(e["type"]),
            }
            for e in exc.errors()
        ]
    elif isinstance(exc, CommandRejected | QueryRejected):
        body["detail"] = [
            {"loc": e.path.split("."), "msg": e.message, "type": "value_error"} for e in exc.errors
        ]
    elif isinstance(exc, StaleRead):
        body.update(stale=True, view=exc.view, position=exc.position)
        headers["X-Stale"] = "true"
    if isinstance(exc, ReadRefused):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    elif isinstance(exc, ServiceUnavailable):
        headers["Retry-After"] = "1"
    return status, kind.model_validate(body).model_dump(mode="json"), headers


async def _handle(_request: Request, exc: Exception) -> JSONResponse:
    status, body, headers = _body_of(exc)
    return JSONResponse(body, status_code=status, headers=headers)


# -- the buses as dependencies ---------------------------------------------------------


@dataclass
class Buses:
    """What the lifespan opened: the app's command bus and query bus."""

    commands: AsyncCommandBus
    queries: AsyncQueryBus


def _buses(request: Request) -> Buses:
    buses: Buses | None = getattr(request.app.state, "cqrskit", None)
    if buses is None:
        raise RuntimeError(
            "cqrskit's buses are not open: give the app lifespan=kit.lifespan, "
            "or override command_bus and query_bus in app.dependency_overrides"
        )
    return buses


def command_bus(request: Request) -> AsyncCommandBus:
    """The dependency that gives an endpoint the app's command bus."""
    return _buses(request).commands


def query_bus(request: Request) -> AsyncQueryBus:
    """The dependency that gives an endpoint the app's query bus."""
    return _buses(request).queries


#: An endpoint parameter: the app's :class:`AsyncCommandBus`.
Commands = Annotated[AsyncCommandBus, Depends(command_bus)]
#: An endpoint parameter: the app's :class:`AsyncQueryBus`.
Queries = Annotated[AsyncQueryBus, Depends(query_bus)]


class ReadYourWrites:
    """A query endpoint's read-your-writes parameters, and the ``X-Stale`` header it sets."""

    def __init__(
        self,
        response: Response,
        min_position: Annotated[
            int | None,
            Query(ge=1, description="Answer only once the read model has this position"),
        ] = None,
        stale: Annotated[
            Literal["error", "flag"],
            Query(description="If min_position is not reached in time: 409, or 200 with X-Stale"),
        ] = "error",
        wait: Annotated[
            float | None,
            Query(ge=0, le=60, description="Seconds to wait for min_position"),
        ] = None,
    ):
        self.response = response
        self.min_position = min_position
        self.stale: Literal["error", "flag"] = stale
        self.wait = wait

    async def ask(self, bus: AsyncQueryBus, query: CqrsQuery) -> Any:  # noqa: ANN401
        """The query's answer (any value its handler gives), ``X-Stale`` set if stale."""
        answer = await bus.ask(
            query, min_position=self.min_position, on_stale=self.stale, wait=self.wait
        )
        if answer.stale:
            self.response.headers["X-Stale"] = "true"
        return answer.value

    async def one(self, bus: AsyncQueryBus, query: CqrsQuery) -> Any:  # noqa: ANN401
        """:meth:`ask` for a query that answers one document; None is a 404.

        Raises:
            NotFound: the handler found no document (the body names no value).
        """
        value = await self.ask(bus, query)
        if value is None:
            view = bus.handlers.registration(query).view_name
            raise NotFound(type(query).__name__, view)
        return value

    async def page(self, bus: AsyncQueryBus, query: CqrsQuery) -> Page[Any]:
        """:meth:`ask` for a query that answers a page."""
        value: Page[Any] = await self.ask(bus, query)
        return value


#: An endpoint parameter: read-your-writes options of a query endpoint.
ReadOptions = Annotated[ReadYourWrites, Depends()]


# -- the lifespan ------------------------------------------------------------------


class Cqrskit:
    """cqrskit in a FastAPI app: its buses, its lifespan, its error handlers.

    ``application`` builds the event-sourced application from settings
    (the application class itself will do); ``settings`` default to
    :meth:`Settings.load` when the app starts.
    """

    def __init__(
        self,
        application: Callable[[Settings], Application],
        commands: CommandHandlers,
        queries: QueryHandlers,
        settings: Settings | None = None,
    ):
        self.application = application
        self.commands = commands
        self.queries = queries
        self.settings = settings

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Open the buses when the app starts; close them, and the application, when it stops."""
        settings = self.settings or Settings.load()
        runtime = Runtime(settings)
        application = self.application(settings)
        commands = AsyncCommandBus(
            runtime.command_bus(application, self.commands), settings.command_threads
        )
        queries = runtime.async_query_bus(self.queries)
        app.state.cqrskit = Buses(commands, queries)
        try:
            yield
        finally:
            await queries.aclose()
            commands.close()
            application.close()

    @staticmethod
    def install(app: FastAPI, errors: Sequence[type[Exception]] | None = None) -> None:
        """Map cqrskit's errors (and request validation) to HTTP, as :data:`STATUS_OF` says."""
        for error in errors or [cls for cls, _, _ in STATUS_OF]:
            app.add_exception_handler(error, _handle)
