"""Each application keeps its own relay position, also in a schema it shares (issue 15).

A relay position recorded before positions were kept per application is
adopted only by the one application it can belong to; when that is
ambiguous the relay refuses to start rather than guess.
"""

from __future__ import annotations

import pytest

from cqrskit import CommandBus, Settings
from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.postgres.outbox import read_status
from cqrskit.errors import AmbiguousRelayPosition
from cqrskit.eventstore import Application
from cqrskit.runtime import Runtime
from examples.library.app import AddBook, LibraryApp
from examples.library.app import handlers as library_handlers
from examples.shop import Order, ShopApp
from tests.integration.conftest import init_schema
from tests.integration.relay.conftest import (
    LINE,
    RelayHarness,
    consume,
    relay_thread,
    wait_until,
)

# The relay table as cqrskit created it before positions were per application.
LEGACY_TABLE = (
    'CREATE TABLE "{schema}".cqrskit_relay ('
    "name text PRIMARY KEY, position bigint NOT NULL DEFAULT 0, instance text, "
    "heartbeat_at timestamptz, last_error text, last_error_at timestamptz, "
    "updated_at timestamptz NOT NULL DEFAULT now())"
)


def _apps(relays: RelayHarness) -> tuple[Settings, Settings]:
    """Settings of the shop and of the library, in one schema, each with its own topics."""
    shop = relays.settings.model_copy(update={"topic_prefix": f"{relays.prefix}_shop"})
    library = relays.settings.model_copy(update={"topic_prefix": f"{relays.prefix}_library"})
    return shop, library


def _store_orders(settings: Settings, count: int) -> None:
    with ShopApp(settings) as app:
        app.save(*[Order(customer_id=f"c{n}", lines=[LINE]) for n in range(count)])


def _store_books(settings: Settings, count: int) -> set[int]:
    init_schema(settings, LibraryApp)
    with LibraryApp(settings) as app:
        bus = CommandBus(app, library_handlers)
        results = [bus.dispatch(AddBook(title=f"book {n}", author="ada")) for n in range(count)]
    return {r.position for r in results if r.position is not None}


def _shop_and_library(relays: RelayHarness) -> tuple[Settings, Settings, set[int]]:
    """20 orders in the shop, 5 books in the library: (shop, library, the books' positions)."""
    shop, library = _apps(relays)
    _store_orders(shop, 20)
    return shop, library, _store_books(library, 5)


def _legacy_position(settings: Settings, position: int, *applications: type[Application]) -> None:
    """The schema as a cqrskit from before migrations left it, then brought up by 'db init'."""
    schema = settings.postgres_schema
    with pg_backend.connect(settings) as conn:
        conn.execute(f'DROP TABLE "{schema}".cqrskit_relay, "{schema}".cqrskit_migrations')
        conn.execute(LEGACY_TABLE.format(schema=schema))
        conn.execute(
            f"INSERT INTO \"{schema}\".cqrskit_relay (name, position) VALUES ('default', %s)",
            [position],
        )
    for application in applications:
        init_schema(settings, application)


def test_two_applications_in_one_schema_keep_their_own_relay_positions(
    relays: RelayHarness,
) -> None:
    shop, library, books = _shop_and_library(relays)
    with relay_thread(shop, "shop"):
        wait_until(lambda: read_status(shop, "shop").position == 20, 60, "the shop's relay")
    with relay_thread(library, "library"):
        delivered = consume(library, f"{relays.prefix}_library", books, timeout=30)
        status = wait_until(
            lambda: (s := read_status(library, "library")).position == s.head and s,
            30,
            "the library's relay to record its own head",
        )
    assert sorted(set(delivered.positions())) == sorted(books)
    assert status.position == 5
    assert read_status(shop, "shop").position == 20


def test_a_legacy_relay_position_is_adopted_by_the_only_application_in_the_schema(
    relays: RelayHarness,
) -> None:
    shop, _ = _apps(relays)
    _store_orders(shop, 20)
    _legacy_position(shop, 12, ShopApp)
    with relay_thread(shop, "shop"):
        status = wait_until(
            lambda: (s := read_status(shop, "shop")).position == 20 and s, 60, "the relay"
        )
        delivered = consume(shop, f"{relays.prefix}_shop", set(range(13, 21)), timeout=30)
    assert min(delivered.positions()) == 13, "the adopted position was not kept"
    assert status.head == 20


def test_a_legacy_relay_position_two_applications_could_own_is_refused_not_guessed(
    relays: RelayHarness,
) -> None:
    shop, library, books = _shop_and_library(relays)
    _legacy_position(shop, 20, ShopApp, LibraryApp)
    with pytest.raises(AmbiguousRelayPosition) as refused:
        Runtime(library).relay("library").run()
    assert refused.value.position == 20
    assert refused.value.applications == ("library", "shop")
    assert "UPDATE" in str(refused.value)
    assert "DELETE" in str(refused.value)
    with pytest.raises(AmbiguousRelayPosition):
        read_status(library, "library")
    # The operator decides, as the error says: here, that the position was the shop's.
    with pg_backend.connect(library) as conn:
        conn.execute(
            f'UPDATE "{library.postgres_schema}".cqrskit_relay '
            "SET application = 'shop' WHERE application = '' AND name = 'default'"
        )
    with relay_thread(library, "library"):
        consume(library, f"{relays.prefix}_library", books, timeout=30)
    assert read_status(shop, "shop").position == 20
