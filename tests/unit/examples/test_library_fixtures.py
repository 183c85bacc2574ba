"""The library's commands and API tested with cqrskit's pytest fixtures, as a user would."""

from __future__ import annotations

import asyncio

from cqrskit_pytest import BusesFactory, ScenarioFactory
from examples.library.app import AddBook, LibraryApp, ReturnBook, handlers
from examples.library.domain import Book
from examples.library.queries import BooksBy, queries
from examples.library.views import Catalogue


# --8<-- [start:plugin]
def test_a_returned_book_is_on_the_shelf_again(cqrskit_scenario: ScenarioFactory) -> None:
    book = Book(title="Dune", author="Frank Herbert")
    book.lend("ada")
    scenario = cqrskit_scenario(handlers, LibraryApp).given(*book.collect_events())
    scenario.when(ReturnBook(book_id=book.id)).then(Book.Returned)


def test_the_api_finds_a_book_added(cqrskit_buses: BusesFactory) -> None:
    buses = cqrskit_buses(LibraryApp, handlers, queries, Catalogue())  # closed after the test

    async def add_then_find() -> list[str]:
        added = await buses.commands.dispatch(AddBook(title="Dune", author="Frank Herbert"))
        buses.project()  # what the relay and the workers do
        found = await buses.queries.ask(
            BooksBy(author="Frank Herbert"), min_position=added.position
        )
        return [book.title for book in found.value.items]

    assert asyncio.run(add_then_find()) == ["Dune"]


# --8<-- [end:plugin]
