"""Step 5: commands in, a queried view out, on the real services.

Run with the relay and the catalogue's worker running (see README.md):
``python -m examples.library.try_it``.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from cqrskit import Application, CommandBus, Settings
from cqrskit.runtime import Runtime
from examples.library.app import AddBook, LendBook, LibraryApp, ReturnBook, handlers
from examples.library.queries import BooksBy, FindBooks, queries


def main() -> None:
    settings = Settings.load()
    app: Application = LibraryApp(settings=settings)
    commands = CommandBus(app, handlers)
    dune = commands.dispatch(AddBook(title="Dune", author="Frank Herbert"))
    commands.dispatch(AddBook(title="Dune Messiah", author="Frank Herbert"))
    commands.dispatch(AddBook(title="The Left Hand of Darkness", author="Ursula K. Le Guin"))
    commands.dispatch(LendBook(book_id=dune.aggregate_id, member_id="ada"))
    commands.dispatch(ReturnBook(book_id=dune.aggregate_id))
    last = commands.dispatch(LendBook(book_id=dune.aggregate_id, member_id="grace"))

    reads = Runtime(settings).query_bus(queries)
    # Wait until the catalogue has applied our last write, then ask (a
    # worker that has only just started may need a few seconds to join).
    found = reads.ask(
        FindBooks(text="dune", available_only=True), min_position=last.position, wait=60
    )
    by_herbert = reads.ask(BooksBy(author="Frank Herbert")).value

    table = Table("title", "author", "available", "times lent", title="Books by Frank Herbert")
    for book in by_herbert.items:
        table.add_row(book.title, book.author, str(book.available), str(book.times_lent))
    console = Console()
    console.print(table)
    console.print("on the shelf, matching 'dune':", [book.title for book in found.value.items])


if __name__ == "__main__":
    main()
