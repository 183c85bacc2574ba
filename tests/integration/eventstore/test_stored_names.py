"""Stored event names on real PostgreSQL: code moved between deployments, and old stores.

Decision 0021. Each deployment is a process of its own, as in production:
one stores events with the tutorial's ``examples.library``, the next runs
the same code moved to another package, with ``examples`` gone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cqrskit import Settings
from cqrskit.adapters.postgres.reader import read_envelopes
from examples.library.app import LibraryApp
from examples.library.domain import Book
from tests.integration.conftest import REPO_ROOT
from tests.moved_code import (
    LibraryWithUpcaster,
    check_store_before_names,
    move_library,
    stored_names,
)

BEFORE_THE_MOVE = """
import sys
from cqrskit import CommandBus, Settings
from examples.library.app import AddBook, LendBook, LibraryApp, handlers
with LibraryApp(Settings.load(postgres_schema=sys.argv[1])) as app:
    bus = CommandBus(app, handlers)
    book = bus.dispatch(AddBook(title="Dune", author="Frank Herbert")).aggregate_id
    bus.dispatch(LendBook(book_id=book, member_id="ada"))
print(book)
"""

AFTER_THE_MOVE = """
import sys
from uuid import UUID
sys.modules["examples"] = None  # the tutorial's package is gone
sys.path.insert(0, sys.argv[2])
from cqrskit import CommandBus, Settings
from relocated_library.app import LibraryApp, ReturnBook, handlers
with LibraryApp(Settings.load(postgres_schema=sys.argv[1])) as app:
    book = app.repository.get(UUID(sys.argv[3]))
    assert type(book).__module__ == "relocated_library.domain", type(book)
    result = CommandBus(app, handlers).dispatch(ReturnBook(book_id=book.id))
print(book.borrower, result.version)
"""


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_tutorial_domain_loads_after_moving_to_another_package(
    schema_settings: Settings, tmp_path: Path
) -> None:
    schema = schema_settings.postgres_schema
    book = run(BEFORE_THE_MOVE, schema)
    move_library(tmp_path, "relocated_library")
    assert run(AFTER_THE_MOVE, schema, str(tmp_path), book) == "ada 3"
    with LibraryApp(schema_settings) as app:
        assert stored_names(app) == [
            ("Book.Added", "Book"),
            ("Book.Lent", None),
            ("Book.Returned", None),
        ]
    replayed = read_envelopes(schema_settings, "library")
    assert [(e.event_type, e.aggregate_type) for e in replayed] == [
        ("Book.Added", "Book"),
        ("Book.Lent", "Book"),
        ("Book.Returned", "Book"),
    ]


@pytest.mark.parametrize("module", ["examples.library.domain", "library_before_the_move.domain"])
def test_a_store_written_with_module_paths_still_loads(
    schema_settings: Settings, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows as cqrskit wrote them before names, the module importable or gone."""
    monkeypatch.setattr(Book.Lent, "schema_version", 2)  # type: ignore[attr-defined]
    with LibraryWithUpcaster(schema_settings) as app:
        check_store_before_names(app, module)
    # Replays (and the relay, which encodes the same way) see one type per event.
    replayed = list(read_envelopes(schema_settings, "library"))
    assert [(e.event_type, e.aggregate_type, e.schema_version) for e in replayed] == [
        ("Book.Added", "Book", 1),
        ("Book.Lent", "Book", 1),
        ("Book.Returned", "Book", 1),
    ]
