"""cqrskit's pytest plugin, run by pytest's own ``pytester`` on a test file of a user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

REPO_ROOT = Path(__file__).resolve().parents[2]

USER_TESTS = """
import asyncio
import threading
from decimal import Decimal

from cqrskit import RuleViolated
from cqrskit.testing import expect, stored_envelopes
from examples.library.app import AddBook, LendBook, LibraryApp, handlers
from examples.library.domain import Book
from examples.library.queries import BooksBy, queries
from examples.library.views import Catalogue
from examples.shop import OrderLine, PlaceOrder, RegisterItem, ReserveStock, ShopApp
from examples.shop import handlers as shop_handlers
from examples.shop.workflow import OrderWorkflow


def test_a_book_on_the_shelf_is_lent(cqrskit_scenario):
    book = Book(title="Dune", author="Frank Herbert")
    scenario = cqrskit_scenario(handlers, LibraryApp)
    scenario.given(*book.collect_events()).when(LendBook(book_id=book.id, member_id="ada"))
    scenario.then(expect(Book.Lent, member_id="ada"))


def test_a_lent_book_is_not_lent_again(cqrskit_scenario):
    book = Book(title="Dune", author="Frank Herbert")
    book.lend("ada")
    scenario = cqrskit_scenario(handlers, LibraryApp).given(*book.collect_events())
    scenario.when(LendBook(book_id=book.id, member_id="grace"))
    scenario.then_raises(RuleViolated, match="already lent to ada")


def test_a_wrong_expectation_fails(cqrskit_scenario):
    book = Book(title="Dune", author="Frank Herbert")
    scenario = cqrskit_scenario(handlers, LibraryApp).given(*book.collect_events())
    scenario.when(LendBook(book_id=book.id, member_id="ada"))
    scenario.then(expect(Book.Lent, member_id="somebody else"))


def test_an_order_placed_reserves_its_stock(cqrskit_scenario, cqrskit_saga_scenario):
    shop = cqrskit_scenario(shop_handlers, ShopApp)
    item = shop.when(RegisterItem(sku="tea", name="tea", quantity=10)).result.aggregate_id
    line = OrderLine(sku="tea", quantity=2, unit_price=Decimal("3.00"), item_id=item)
    order = shop.when(PlaceOrder(customer_id="ada", lines=[line])).result.aggregate_id
    saga = cqrskit_saga_scenario(OrderWorkflow()).when(*stored_envelopes(shop.application))
    assert saga.sent == [ReserveStock(item_id=item, order_id=order, quantity=2)]


def test_buses_answer_from_the_folded_read_model(cqrskit_buses):
    buses = cqrskit_buses(LibraryApp, handlers, queries, Catalogue())

    async def add_then_ask():
        await buses.commands.dispatch(AddBook(title="Dune", author="Frank Herbert"))
        buses.project()
        return await buses.queries.ask(BooksBy(author="Frank Herbert"))

    found = asyncio.run(add_then_ask())
    assert [book.title for book in found.value.items] == ["Dune"]


def test_the_buses_threads_were_stopped_after_the_test_that_made_them():
    assert not [t for t in threading.enumerate() if t.name.startswith("cqrskit-command")]
"""


def test_the_fixtures_make_the_kits_objects_and_a_wrong_expectation_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the examples the test file imports
    # A process of its own, as a user's run: pytest loads the plugin from its entry point.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_a_wrong_expectation_fails*", "*expected events*somebody else*"]
    )


def test_the_plugin_is_loaded_by_pytest_itself_and_imports_no_cqrskit_until_used() -> None:
    probe = (
        "import sys, importlib.metadata as m;"
        "(plugin,) = [e for e in m.entry_points(group='pytest11') if e.name == 'cqrskit'];"
        "plugin.load();"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'cqrskit'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout
