"""Step 2: commands, their handlers, and the application that stores the events."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from cqrskit import Application, Command, CommandHandlers, UnitOfWork
from examples.library.domain import Book, Title


class AddBook(Command):
    """Put a new book on the shelf."""

    title: Title
    author: Title


class LendBook(Command):
    """Lend a book to a member."""

    book_id: UUID
    member_id: str = Field(min_length=1, max_length=64)


class ReturnBook(Command):
    """A member brings a book back."""

    book_id: UUID


class LibraryApp(Application):
    """The event store: tables ``library_*``, topics ``library.*``."""

    name = "library"


handlers = CommandHandlers()


@handlers.handles(AddBook)
def add_book(command: AddBook, uow: UnitOfWork) -> Book:
    return uow.add(Book(title=command.title, author=command.author))


@handlers.handles(LendBook)
def lend_book(command: LendBook, uow: UnitOfWork) -> Book:
    book = uow.get(Book, command.book_id)
    book.lend(command.member_id)
    return book


@handlers.handles(ReturnBook)
def return_book(command: ReturnBook, uow: UnitOfWork) -> Book:
    book = uow.get(Book, command.book_id)
    book.give_back()
    return book
