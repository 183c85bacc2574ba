"""The commands and the read model, without services."""

from __future__ import annotations

from uuid import uuid4

import pytest

from cqrskit import AggregateNotFound, CommandBus, CommandRejected, RuleViolated
from cqrskit.projections import fold
from cqrskit.testing import Scenario, expect, stored_envelopes
from examples.library.app import AddBook, LendBook, LibraryApp, ReturnBook, handlers
from examples.library.domain import Book
from examples.library.views import BookView, Catalogue


# --8<-- [start:scenarios]
def test_a_book_on_the_shelf_can_be_lent() -> None:
    book = Book(title="Dune", author="Frank Herbert")
    (
        Scenario(handlers, LibraryApp)
        .given(*book.collect_events())
        .when(LendBook(book_id=book.id, member_id="ada"))
        .then(expect(Book.Lent, member_id="ada"))
    )


def test_a_lent_book_cannot_be_lent_again() -> None:
    book = Book(title="Dune", author="Frank Herbert")
    book.lend("ada")
    (
        Scenario(handlers, LibraryApp)
        .given(*book.collect_events())
        .when(LendBook(book_id=book.id, member_id="grace"))
        .then_raises(RuleViolated, match="already lent to ada")
    )


# --8<-- [end:scenarios]
def test_returning_a_book_on_the_shelf_is_refused() -> None:
    book = Book(title="Dune", author="Frank Herbert")
    scenario = Scenario(handlers, LibraryApp).given(*book.collect_events())
    scenario.when(ReturnBook(book_id=book.id)).then_raises(RuleViolated, match="not lent")


def test_an_unknown_book_is_a_clear_error() -> None:
    missing = uuid4()
    error = (
        Scenario(handlers, LibraryApp)
        .when(ReturnBook(book_id=missing))
        .then_raises(AggregateNotFound)
    )
    assert str(missing) in str(error)


def test_a_command_with_a_blank_title_is_rejected_with_its_field() -> None:
    with pytest.raises(CommandRejected) as caught:
        handlers.parse("AddBook", {"title": "", "author": "Frank Herbert"})
    assert [e.path for e in caught.value.errors] == ["title"]


# --8<-- [start:fold]
def test_the_catalogue_counts_loans_and_knows_what_is_on_the_shelf() -> None:
    app = LibraryApp(persistence="memory")
    bus = CommandBus(app, handlers)
    dune = bus.dispatch(AddBook(title="Dune", author="Frank Herbert")).aggregate_id
    bus.dispatch(LendBook(book_id=dune, member_id="ada"))
    bus.dispatch(ReturnBook(book_id=dune))
    bus.dispatch(LendBook(book_id=dune, member_id="grace"))

    docs = fold(Catalogue(), stored_envelopes(app))

    assert docs[str(dune)] == BookView(
        book_id=str(dune), title="Dune", author="Frank Herbert", available=False, times_lent=2
    )


# --8<-- [end:fold]
def test_the_catalogue_applies_a_redelivered_event_once() -> None:
    app = LibraryApp(persistence="memory")
    bus = CommandBus(app, handlers)
    dune = bus.dispatch(AddBook(title="Dune", author="Frank Herbert")).aggregate_id
    bus.dispatch(LendBook(book_id=dune, member_id="ada"))
    events = stored_envelopes(app)
    docs = fold(Catalogue(), events + events)
    assert docs[str(dune)].times_lent == 1  # type: ignore[attr-defined]
