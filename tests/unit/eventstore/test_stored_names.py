"""Stored event names: code can move, and stores written with module paths still load.

Decision 0021. The integration twin, on PostgreSQL and across processes,
is tests/integration/eventstore/test_stored_names.py.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar
from uuid import uuid4

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from cqrskit import (
    Aggregate,
    Application,
    CommandBus,
    DuplicateEventName,
    InvalidEventName,
    UnknownEventName,
    event,
)
from cqrskit.domain import _names
from cqrskit.testing import stored_envelopes
from examples.library.app import AddBook, LendBook, LibraryApp, handlers
from examples.library.domain import Book
from tests.moved_code import (
    LibraryWithUpcaster,
    check_store_before_names,
    move_library,
    rows_before_names,
    stored_names,
)


def test_events_are_stored_under_their_names_not_their_module() -> None:
    app = LibraryApp(persistence="memory")
    bus = CommandBus(app, handlers)
    book = bus.dispatch(AddBook(title="Dune", author="Frank Herbert")).aggregate_id
    bus.dispatch(LendBook(book_id=book, member_id="ada"))
    assert stored_names(app) == [("Book.Added", "Book"), ("Book.Lent", None)]
    _, lent = stored_envelopes(app)
    assert (lent.event_type, lent.aggregate_type, lent.event_class) == (
        "Book.Lent",
        "Book",
        "Book.Lent",
    )


class SnapshottingLibrary(LibraryApp):
    name = "library"
    is_snapshotting_enabled = True


@pytest.fixture
def move_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Any]]:
    """Move the library to package ``relocated_library``; the old module no longer imports.

    In one process, as a deployment of moved code is in the next: the old
    classes give their names up, as they would by not existing.
    """
    released: dict[str, type[Any]] = {}

    def move() -> ModuleType:
        move_library(tmp_path, "relocated_library")
        monkeypatch.syspath_prepend(str(tmp_path))
        released.update(_names.forget_module("examples.library.domain"))
        monkeypatch.setitem(sys.modules, "examples.library.domain", None)
        with pytest.raises(ImportError):
            importlib.import_module("examples.library.domain")
        return importlib.import_module("relocated_library.app")

    try:
        yield move
    finally:
        _names.forget_module("relocated_library")
        for module in [m for m in sys.modules if m.partition(".")[0] == "relocated_library"]:
            del sys.modules[module]
        for name, cls in released.items():
            _names.claim(name, cls)


def test_the_tutorial_domain_loads_from_another_module_path(
    move_away: Callable[[], Any],
) -> None:
    app = LibraryApp(persistence="memory")
    bus = CommandBus(app, handlers)
    book = bus.dispatch(AddBook(title="Dune", author="Frank Herbert")).aggregate_id
    bus.dispatch(LendBook(book_id=book, member_id="ada"))

    moved = move_away()
    loaded = app.repository.get(book)
    assert type(loaded) is moved.Book
    assert type(loaded).__module__ == "relocated_library.domain"
    assert (loaded.title, loaded.borrower, loaded.version) == ("Dune", "ada", 2)
    result = CommandBus(app, moved.handlers).dispatch(moved.ReturnBook(book_id=book))
    assert result.version == 3
    assert app.repository.get(book).borrower is None
    assert stored_names(app)[-1] == ("Book.Returned", None)


def test_a_snapshot_loads_from_another_module_path(move_away: Callable[[], Any]) -> None:
    app = SnapshottingLibrary(persistence="memory")
    bus = CommandBus(app, handlers)
    book = bus.dispatch(AddBook(title="Dune", author="Frank Herbert")).aggregate_id
    bus.dispatch(LendBook(book_id=book, member_id="ada"))
    app.take_snapshot(book)
    assert app.snapshots is not None
    (snapshot,) = app.snapshots.recorder.select_events(book)
    assert snapshot.topic == "cqrskit.Snapshot"
    assert orjson.loads(snapshot.state)["topic"] == "Book"

    moved = move_away()
    loaded = app.repository.get(book)
    assert type(loaded) is moved.Book
    assert loaded.borrower == "ada"


@pytest.mark.parametrize("module", ["examples.library.domain", "library_before_the_move.domain"])
def test_a_store_written_with_module_paths_still_loads(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows as cqrskit wrote them before names: while the module imports, and once it is gone."""
    monkeypatch.setattr(Book.Lent, "schema_version", 2)  # type: ignore[attr-defined]
    app = LibraryWithUpcaster(persistence="memory")
    check_store_before_names(app, module)
    # The wire: old rows give the same event and aggregate types as new ones.
    envelopes = stored_envelopes(app)
    assert [(e.event_type, e.aggregate_type) for e in envelopes] == [
        ("Book.Added", "Book"),
        ("Book.Lent", "Book"),
        ("Book.Returned", "Book"),
    ]
    assert envelopes[0].event_class == f"{module}:Book.Added"


class LibraryOfVolumes(LibraryWithUpcaster):
    """Its books were a class Volume, in a module long gone."""

    name = "library"
    old_names: ClassVar = {
        "shelves.domain:Volume": Book,
        "shelves.domain:Volume.Added": Book.Added,  # type: ignore[attr-defined]
        "shelves.domain:Volume.Lent": Book.Lent,  # type: ignore[attr-defined]
    }


def test_old_names_map_what_no_class_is_named_any_more(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Book.Lent, "schema_version", 2)  # type: ignore[attr-defined]
    book = uuid4()
    app = LibraryOfVolumes(persistence="memory")
    app.recorder.insert_events(rows_before_names(book, "shelves.domain", aggregate="Volume"))
    loaded = app.repository.get(book)
    assert type(loaded) is Book
    assert loaded.borrower == "ada"


def test_a_stored_name_no_class_answers_to_is_one_line_naming_it_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Book.Lent, "schema_version", 2)  # type: ignore[attr-defined]
    book = uuid4()
    app = LibraryWithUpcaster(persistence="memory")
    app.recorder.insert_events(rows_before_names(book, "shelves.domain", aggregate="Volume"))
    with pytest.raises(UnknownEventName) as unknown:
        CommandBus(app, handlers).dispatch(LendBook(book_id=book, member_id="grace"))
    message = str(unknown.value)
    assert message == (
        f"stored name 'shelves.domain:Volume.Added' of aggregate {book} matches no class: "
        "import the module that defines it, or map the old name to the class that reads it "
        "now in the application's old_names = {'shelves.domain:Volume.Added': Volume.Added}"
    )
    assert (unknown.value.name, unknown.value.aggregate_id) == ("shelves.domain:Volume.Added", book)
    # No TopicError behind it: the traceback is this line alone.
    assert unknown.value.__cause__ is None
    assert unknown.value.__context__ is None


def test_an_unknown_name_is_refused_too() -> None:
    book = uuid4()
    app = LibraryApp(persistence="memory")
    (added, _) = rows_before_names(book)
    app.recorder.insert_events([StoredEvent(book, 1, "Book.Burned", added.state)])
    with pytest.raises(UnknownEventName, match=r"'Book\.Burned' of aggregate"):
        app.repository.get(book)


def test_old_names_cannot_take_a_name_a_class_holds() -> None:
    class Confused(LibraryApp):
        old_names: ClassVar = {"Book.Lent": Book.Added}  # type: ignore[attr-defined]

    with pytest.raises(InvalidEventName, match=r"'Book\.Lent' is the name of"):
        Confused(persistence="memory")


def test_a_second_aggregate_claiming_a_name_is_refused_in_one_line() -> None:
    with pytest.raises(DuplicateEventName) as refused:

        class Impostor(Aggregate):
            TOPIC = "Book"

            @event("Added")
            def __init__(self, title: str) -> None:
                self.title = title

    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(
        "two classes claim the stored name 'Book': examples.library.domain.Book and "
        "tests.unit.eventstore.test_stored_names.test_a_second_aggregate_claiming_a_name_is_"
        "refused_in_one_line.<locals>.Impostor; give one of them another name: TOPIC = "
    )
    assert _names.registered("Book") is Book


def test_two_events_of_one_aggregate_claiming_a_name_are_refused() -> None:
    with pytest.raises(DuplicateEventName, match=r"'Desk\.Lent': .*Desk\.Lent and .*Borrowed"):

        class Desk(Aggregate):
            TOPIC = "Desk"

            @event("Added")
            def __init__(self) -> None:
                pass

            @event("Lent")
            def lend(self) -> None:
                pass

            @event("Borrowed", topic="Desk.Lent")
            def borrow(self) -> None:
                pass

    # Nothing of the refused class stays registered: the name can be used.
    class Desk(Aggregate):  # type: ignore[no-redef]
        TOPIC = "Desk"

        @event("Added")
        def __init__(self) -> None:
            pass

    assert _names.registered("Desk") is Desk


def test_an_event_is_named_under_its_aggregate() -> None:
    with pytest.raises(InvalidEventName, match=r"like 'Chair\.Lent'"):

        class Chair(Aggregate):
            TOPIC = "Chair"

            @event("Added")
            def __init__(self) -> None:
                pass

            @event("Lent", topic="Table.Lent")
            def lend(self) -> None:
                pass

    with pytest.raises(InvalidEventName, match="has no ':'"):

        class Stool(Aggregate):
            TOPIC = "furniture:Stool"


def test_a_renamed_class_keeps_the_name_it_is_stored_under() -> None:
    class Volume(Aggregate):
        TOPIC = "Atlas"

        @event("Added")
        def __init__(self, title: str) -> None:
            self.title = title

        @event("Borrowed", topic="Atlas.Lent")
        def borrow(self, member_id: str) -> None:
            self.borrower = member_id

    class SignedVolume(Volume):
        TOPIC = "SignedAtlas"

    volume = Volume(title="Maps")
    volume.borrow(member_id="ada")
    app = Application(persistence="memory")
    app.save(volume)
    assert stored_names(app) == [("Atlas.Added", "Atlas"), ("Atlas.Lent", None)]
    _, lent = stored_envelopes(app)
    assert (lent.event_type, lent.aggregate_type) == ("Atlas.Lent", "Atlas")
    assert app.repository.get(volume.id).borrower == "ada"
    # A subclass names its copies of the events after itself.
    assert SignedVolume.Borrowed.TOPIC == "SignedAtlas.Borrowed"  # type: ignore[attr-defined]
    assert _names.registered("Atlas.Lent") is Volume.Borrowed  # type: ignore[attr-defined]


def test_old_names_map_a_name_given_up() -> None:
    class LibraryThatLent(LibraryApp):
        old_names: ClassVar = {"Book.Borrowed": Book.Lent}  # type: ignore[attr-defined]

    app = LibraryThatLent(persistence="memory")
    book = Book(title="Dune", author="Frank Herbert")
    book.lend("ada")
    added, lent = (app.mapper.to_stored_event(e) for e in book.collect_events())
    app.recorder.insert_events([added, StoredEvent(book.id, 2, "Book.Borrowed", lent.state)])
    assert app.repository.get(book.id).borrower == "ada"
    with pytest.raises(UnknownEventName, match=r"'Book\.Borrowed'"):
        LibraryApp(persistence="memory").mapper.to_domain_event(
            app.recorder.select_events(book.id)[1]
        )
