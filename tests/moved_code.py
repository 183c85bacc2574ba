"""The tutorial's library moved to another package, and stores written before stored names.

Shared by the unit and integration tests of stored event names
(docs/decisions/0021-stored-event-names.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
from eventsourcing.persistence import StoredEvent

from cqrskit import Application, CommandBus, Upcasters
from examples.library.app import LibraryApp, ReturnBook, handlers
from examples.library.domain import Book

LIBRARY = Path(__file__).resolve().parents[1] / "examples" / "library"


def move_library(root: Path, package: str) -> None:
    """Copy the library's domain and application into ``root/package``, as a user moving code.

    The copies are the tutorial's files, with the application importing the
    domain from its new place; ``root`` must be on ``sys.path`` to import them.
    """
    target = root / package
    target.mkdir(parents=True)
    (target / "__init__.py").write_text("")
    (target / "domain.py").write_text((LIBRARY / "domain.py").read_text())
    app = (LIBRARY / "app.py").read_text()
    assert "from examples.library.domain import" in app
    (target / "app.py").write_text(app.replace("examples.library.domain", f"{package}.domain"))


def _row(book_id: UUID, version: int, topic: str, state: dict[str, Any]) -> StoredEvent:
    metadata = {
        "event_id": f"00000000-0000-4000-8000-00000000000{version}",
        "schema_version": state.pop("schema_version", 1),
        "correlation_id": None,
        "causation_id": None,
        "traceparent": None,
    }
    timestamp = f"2025-11-0{version}T10:00:00Z"
    body = {"timestamp": timestamp, "metadata": metadata, **state}
    return StoredEvent(book_id, version, topic, orjson.dumps(body))


def rows_before_names(
    book_id: UUID, module: str = "examples.library.domain", aggregate: str = "Book"
) -> list[StoredEvent]:
    """A book added and lent, as cqrskit stored it before stored names.

    The topic column and the created event's ``originator_topic`` hold
    module paths (``module:Book.Added``, ``module:Book``), as eventsourcing's
    ``get_topic`` made them; the rest is the JSON the mapper wrote then.
    ``Book.Lent`` is at schema version 1, whose payload called the member
    ``member`` (see :class:`LibraryWithUpcaster`).
    """
    return [
        _row(
            book_id,
            1,
            f"{module}:{aggregate}.Added",
            {
                "originator_topic": f"{module}:{aggregate}",
                "title": "Dune",
                "author": "Frank Herbert",
            },
        ),
        _row(book_id, 2, f"{module}:{aggregate}.Lent", {"member": "ada"}),
    ]


class LibraryWithUpcaster(LibraryApp):
    """The library's application (same tables), lifting ``Book.Lent`` from version 1.

    Version 1 called the member ``member``; the tests raise
    ``Book.Lent.schema_version`` to 2 while they use it.
    """

    name = "library"
    upcasters = Upcasters()


@LibraryWithUpcaster.upcasters.register(Book.Lent, from_version=1)  # type: ignore[attr-defined]
def member_becomes_member_id(state: dict[str, Any]) -> dict[str, Any]:
    """Book.Lent v1 -> v2."""
    state = dict(state)
    state["member_id"] = state.pop("member")
    return state


def stored_names(app: Application) -> list[tuple[str, str | None]]:
    """(topic column, ``originator_topic``) of every event ``app`` stored, in order."""
    rows = app.recorder.select_notifications(start=1, limit=100)
    return [(row.topic, orjson.loads(row.state).get("originator_topic")) for row in rows]


def check_store_before_names(app: LibraryWithUpcaster, module: str) -> None:
    """Store :func:`rows_before_names` of ``module``; the book must load, upcast, and go on.

    Needs ``Book.Lent.schema_version`` raised to 2. The new event is stored
    under its name beside the old rows, which stay as they were.
    """
    book = uuid4()
    app.recorder.insert_events(rows_before_names(book, module))
    loaded = app.repository.get(book)
    assert type(loaded) is Book
    assert (loaded.title, loaded.borrower, loaded.version) == ("Dune", "ada", 2)
    _, lent = app.events.get(book)
    assert (lent.member_id, lent.metadata.schema_version) == ("ada", 2)  # type: ignore[attr-defined]
    CommandBus(app, handlers).dispatch(ReturnBook(book_id=book))
    assert stored_names(app) == [
        (f"{module}:Book.Added", f"{module}:Book"),
        (f"{module}:Book.Lent", None),
        ("Book.Returned", None),
    ]
