"""Step 5: the application over HTTP, on ``cqrskit.fastapi``.

Run it with ``uvicorn examples.library.api:app``; its OpenAPI is at ``/docs``.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import FastAPI
from pydantic import BaseModel

from cqrskit import CommandResult, Page
from cqrskit.fastapi import (
    COMMAND_RESPONSES,
    QUERY_RESPONSES,
    Commands,
    Cqrskit,
    Queries,
    ReadOptions,
)
from examples.library.app import AddBook, LendBook, LibraryApp, handlers
from examples.library.queries import FindBooks, queries
from examples.library.views import BookView

kit = Cqrskit(LibraryApp, handlers, queries)  # settings are loaded when the app starts
app = FastAPI(title="library", lifespan=kit.lifespan)
kit.install(app)  # cqrskit's errors become statuses, as the OpenAPI document says


class NewBook(BaseModel):
    title: str
    author: str


class Loan(BaseModel):
    member_id: str


@app.post("/books", status_code=201, responses=COMMAND_RESPONSES)
async def add_book(body: NewBook, commands: Commands) -> CommandResult:
    # build() checks every field as the command defines it: a bad one is a 422.
    return await commands.dispatch(commands.build(AddBook, **body.model_dump()))


@app.post("/books/{book_id}/loans", responses=COMMAND_RESPONSES)
async def lend_book(book_id: UUID, body: Loan, commands: Commands) -> CommandResult:
    command = commands.build(LendBook, book_id=book_id, member_id=body.member_id)
    return await commands.dispatch(command)


@app.get("/books", responses=QUERY_RESPONSES)
async def find_books(
    text: str, queries: Queries, read: ReadOptions, available_only: bool = False
) -> Page[BookView]:
    # ReadOptions adds ?min_position=&wait=&stale= and sets X-Stale.
    query = queries.handlers.parse(FindBooks, {"text": text, "available_only": available_only})
    return await read.page(queries, query)
