"""The command side on real PostgreSQL: idempotency, concurrency, outbox, snapshots."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import uuid4

import orjson
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from cqrskit import (
    CommandBus,
    CommandResult,
    ConcurrencyError,
    ConfigurationError,
    IdempotencyKeyReused,
    SchemaNotReady,
    ServiceUnavailable,
    Settings,
    Upcasters,
)
from cqrskit.adapters import postgres as pg_backend
from cqrskit.runtime import Runtime
from examples.shop import (
    InventoryItem,
    Order,
    PlaceOrder,
    RegisterItem,
    RestockItem,
    ShopApp,
    handlers,
)
from examples.shop.commands import CancelOrder, ReserveStock
from tests import topping_up
from tests.integration.conftest import REPO_ROOT

ORDER = PlaceOrder(customer_id="ada", lines=[{"sku": "tea", "quantity": 1, "unit_price": "2.00"}])


@pytest.fixture
def app(schema_settings: Settings) -> Iterator[ShopApp]:
    application = ShopApp(schema_settings)
    yield application
    application.close()


@pytest.fixture
def bus(app: ShopApp) -> CommandBus:
    return CommandBus(app, handlers)


def test_a_repeated_key_appends_once_even_from_another_process(
    bus: CommandBus, schema_settings: Settings
) -> None:
    first = bus.dispatch(ORDER, idempotency_key="order-42")
    script = (
        "import json, sys\n"
        "from cqrskit import CommandBus, Settings\n"
        "from examples.shop import PlaceOrder, ShopApp, handlers\n"
        "settings = Settings.load(postgres_schema=sys.argv[1])\n"
        "command = PlaceOrder.model_validate_json(sys.argv[2])\n"
        "with ShopApp(settings) as app:\n"
        "    result = CommandBus(app, handlers).dispatch(command, idempotency_key='order-42')\n"
        "print(result.model_dump_json())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, schema_settings.postgres_schema, ORDER.model_dump_json()],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    again = CommandResult.model_validate_json(done.stdout.strip().splitlines()[-1])
    assert again.replayed
    assert (again.aggregate_id, again.version, again.position) == (
        first.aggregate_id,
        first.version,
        first.position,
    )
    assert bus.application.recorder.max_notification_id() == first.position
    with pytest.raises(IdempotencyKeyReused):
        bus.dispatch(PlaceOrder(customer_id="bob", lines=ORDER.lines), idempotency_key="order-42")


def test_concurrent_keyed_duplicates_append_once(bus: CommandBus) -> None:
    results: list[CommandResult] = []
    barrier = threading.Barrier(6)

    def send() -> None:
        barrier.wait()
        results.append(bus.dispatch(ORDER, idempotency_key="same-key"))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 6
    assert len({r.aggregate_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert bus.application.recorder.max_notification_id() == 1


def test_eight_writers_on_one_aggregate_lose_no_update(schema_settings: Settings) -> None:
    settings = schema_settings.model_copy(update={"command_retries": 100})
    with ShopApp(settings) as app:
        bus = CommandBus(app, handlers)
        item = bus.dispatch(RegisterItem(sku="tea", name="Tea", quantity=0)).aggregate_id
        accepted: list[int] = []
        refused: list[int] = []
        lock = threading.Lock()

        def writer(thread: int) -> None:
            for i in range(15):
                quantity = thread * 1000 + i + 1  # unique, so each event is identifiable
                try:
                    bus.dispatch(RestockItem(item_id=item, quantity=quantity))
                except ConcurrencyError:
                    with lock:
                        refused.append(quantity)
                else:
                    with lock:
                        accepted.append(quantity)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        events = list(app.events.get(item))
        restocked = [e.quantity for e in events if isinstance(e, InventoryItem.Restocked)]
        assert Counter(restocked) == Counter(accepted)
        assert not set(refused) & set(restocked)
        assert len(accepted) + len(refused) == 120
        assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
        assert app.repository.get(item).on_hand == sum(accepted)


def test_a_rolled_back_append_leaves_nothing_in_the_outbox(app: ShopApp) -> None:
    bus = CommandBus(app, handlers)
    order_id = bus.dispatch(ORDER).aggregate_id
    head = app.recorder.max_notification_id()
    stale = app.repository.get(order_id)
    current = app.repository.get(order_id)
    current.cancel("first writer wins")
    app.save(current)
    head = app.recorder.max_notification_id()

    newcomer = Order(customer_id="bob", lines=ORDER.lines)
    stale.cancel("second writer")
    with pytest.raises(IntegrityError):
        app.save(newcomer, stale)  # one transaction: the stale aggregate conflicts
    assert app.recorder.max_notification_id() == head
    assert app.recorder.select_notifications(start=head + 1, limit=10) == []
    assert list(app.events.get(newcomer.id)) == []


def test_snapshots_are_taken_every_n_events_and_used_to_load(app: ShopApp) -> None:
    bus = CommandBus(app, handlers)
    item = bus.dispatch(RegisterItem(sku="tea", name="Tea", quantity=0)).aggregate_id
    for _ in range(119):
        bus.dispatch(RestockItem(item_id=item, quantity=1))
    assert app.snapshots is not None
    versions = [s.originator_version for s in app.snapshots.get(item)]
    assert versions == [50, 100]
    # Remove the history the snapshot covers: only the snapshot can rebuild it now.
    events_table = f'"{app.settings.postgres_schema}".shop_events'
    with pg_backend.connect(app.settings) as conn:
        conn.execute(
            f"DELETE FROM {events_table} WHERE originator_id = %s AND originator_version <= 100",
            [item],
        )
    loaded = app.repository.get(item)
    assert loaded.version == 120
    assert loaded.on_hand == 119


class UpcastingShopApp(ShopApp):
    name = "shop"  # the same tables as ShopApp
    upcasters = Upcasters()


def test_an_upcaster_reads_an_event_stored_under_an_old_schema(schema_settings: Settings) -> None:
    registered = InventoryItem.Registered  # type: ignore[attr-defined]
    original_version = registered.schema_version
    with ShopApp(schema_settings) as app:
        item = InventoryItem(sku="tea", name="Tea", quantity=3)
        (event,) = item.collect_events()
        stored = app.mapper.to_stored_event(event)
        old_state: dict[str, Any] = orjson.loads(stored.state)
        old_state["title"] = old_state.pop("name")  # v1 called it "title"
        app.recorder.insert_events(
            [StoredEvent(stored.originator_id, 1, stored.topic, orjson.dumps(old_state))]
        )

    @UpcastingShopApp.upcasters.register(registered, from_version=1)
    def rename_title(state: dict[str, Any]) -> dict[str, Any]:
        state = dict(state)
        state["name"] = state.pop("title")
        return state

    registered.schema_version = 2
    try:
        with UpcastingShopApp(schema_settings) as app:
            loaded = app.repository.get(item.id)
    finally:
        registered.schema_version = original_version
    assert loaded.name == "Tea"
    assert loaded.on_hand == 3


def test_an_unreachable_database_is_named_after_bounded_retries() -> None:
    settings = Settings.load(
        postgres_dsn="postgresql://cqrskit:cqrskit@127.0.0.1:1/cqrskit", connect_timeout=2
    )
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as caught:
        ShopApp(settings)
    assert "127.0.0.1:1/cqrskit" in str(caught.value)
    assert "CQRSKIT_POSTGRES_DSN" in str(caught.value)
    assert time.monotonic() - started < 60


def test_db_init_is_idempotent_and_keeps_data(schema_settings: Settings) -> None:
    with ShopApp(schema_settings) as app:
        result = CommandBus(app, handlers).dispatch(ORDER)
        assert Runtime(schema_settings).init_schema(ShopApp, sagas=True) == []
        assert Runtime(schema_settings).init_schema(ShopApp, sagas=True) == []
        assert app.repository.get(result.aggregate_id).total == Decimal("2.00")


def test_the_command_side_refuses_a_schema_never_initialised_and_creates_nothing(
    empty_schema_settings: Settings,
) -> None:
    with pytest.raises(SchemaNotReady) as refused:
        ShopApp(empty_schema_settings)
    message = str(refused.value)
    assert empty_schema_settings.postgres_schema in message
    assert "cqrskit db init" in message
    assert "\n" not in message
    with pg_backend.connect(empty_schema_settings) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s",
            [empty_schema_settings.postgres_schema],
        ).fetchone()
    assert found is None, "the command side created the schema"


def test_the_command_side_refuses_to_create_tables_when_asked(schema_settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="cqrskit db init"):
        ShopApp(schema_settings, env={"CREATE_TABLE": "true"})


def test_cli_db_init_creates_then_keeps_tables_and_data(empty_schema_settings: Settings) -> None:
    schema_settings = empty_schema_settings
    env = {**os.environ, "CQRSKIT_POSTGRES_SCHEMA": schema_settings.postgres_schema}
    command = [sys.executable, "-m", "cqrskit.cli", "db", "init", "--app", "examples.shop:ShopApp"]
    first = subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert first.returncode == 0, first.stderr
    assert "applied migration 1 (initial schema) to part store" in first.stdout
    with ShopApp(schema_settings, env={"CREATE_TABLE": "false"}) as app:
        result = CommandBus(app, handlers).dispatch(ORDER)
    second = subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert second.returncode == 0, second.stderr
    assert "is ready in schema" in second.stdout
    assert "applied" not in second.stdout
    with ShopApp(schema_settings, env={"CREATE_TABLE": "false"}) as app:
        assert app.repository.get(result.aggregate_id).customer_id == "ada"


def test_cli_db_init_names_a_bad_app_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cqrskit.cli", "db", "init", "--app", "examples.shop:Nope"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "examples.shop has no cqrskit Application named Nope" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_key_is_recorded_when_the_command_changed_nothing(app: ShopApp) -> None:
    """Issue 15, hole 7b, on PostgreSQL: the key and its outcome are stored with no event."""
    bus = CommandBus(app, topping_up.handlers)
    item = bus.dispatch(RegisterItem(sku="tea", name="Tea", quantity=5)).aggregate_id
    first = bus.dispatch(topping_up.TopUp(item_id=item, available=5), idempotency_key="top-1")
    assert first.events == 0
    bus.dispatch(ReserveStock(item_id=item, order_id=uuid4(), quantity=3))
    before = app.recorder.max_notification_id()
    again = bus.dispatch(topping_up.TopUp(item_id=item, available=5), idempotency_key="top-1")
    assert (again.replayed, again.events, again.version) == (True, 0, first.version)
    assert app.recorder.max_notification_id() == before
    with pytest.raises(IdempotencyKeyReused):
        bus.dispatch(topping_up.TopUp(item_id=item, available=6), idempotency_key="top-1")


def test_a_racing_twin_gets_the_first_result_not_a_rule_violation(bus: CommandBus) -> None:
    """Issue 15, hole 12: a twin sent 0-20 ms after the first ran against the
    state the first left and was told RuleViolated for a command that succeeded."""
    pairs = 200
    orders = [bus.dispatch(ORDER).aggregate_id for _ in range(pairs)]
    outcomes: dict[int, list[CommandResult | Exception]] = {i: [] for i in range(pairs)}
    lock = threading.Lock()

    def send(index: int, delay: float) -> None:
        time.sleep(delay)  # the race itself: a twin 0-20 ms behind, not synchronisation
        command = CancelOrder(order_id=orders[index], reason="changed my mind")
        try:
            outcome: CommandResult | Exception = bus.dispatch(
                command, idempotency_key=f"cancel-{index}"
            )
        except Exception as exc:
            outcome = exc
        with lock:
            outcomes[index].append(outcome)

    rng = random.Random(15)
    for start in range(0, pairs, 10):
        threads = [
            threading.Thread(target=send, args=(i, delay))
            for i in range(start, start + 10)
            for delay in (0.0, rng.uniform(0, 0.02))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    failed = {i: o for i, o in outcomes.items() if any(isinstance(x, Exception) for x in o)}
    assert not failed, f"{len(failed)} of {pairs} pairs: {list(failed.items())[:3]}"
    for index, (one, other) in outcomes.items():
        assert isinstance(one, CommandResult)
        assert isinstance(other, CommandResult)
        assert sorted([one.replayed, other.replayed]) == [False, True], index
        assert (one.aggregate_id, one.version, one.position) == (
            other.aggregate_id,
            other.version,
            other.position,
        )
    assert stored_events(bus.application.settings) == 2 * pairs  # placed + cancelled, once


def stored_events(settings: Settings) -> int:
    with pg_backend.connect(settings) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{settings.postgres_schema}".shop_events')
        return int(row.fetchone()[0])  # type: ignore[index]


def test_a_command_with_a_set_retried_under_other_hash_seeds_is_replayed(
    bus: CommandBus, schema_settings: Settings
) -> None:
    """Issue 15, hole 7a: four processes, four fingerprints, IdempotencyKeyReused."""
    item = bus.dispatch(RegisterItem(sku="tea", name="Tea", quantity=5)).aggregate_id
    skus = sorted(f"sku-{n}" for n in range(12))
    script = (
        "import sys\n"
        "from uuid import UUID\n"
        "from cqrskit import CommandBus, Settings\n"
        "from examples.shop import ShopApp\n"
        "from tests import topping_up\n"
        "settings = Settings.load(postgres_schema=sys.argv[1])\n"
        "command = topping_up.CheckStock(item_id=UUID(sys.argv[2]), skus=set(sys.argv[3:]))\n"
        "with ShopApp(settings) as app:\n"
        "    bus = CommandBus(app, topping_up.handlers)\n"
        "    print(bus.dispatch(command, idempotency_key='check-1').model_dump_json())\n"
    )
    results = []
    for seed in (1, 2, 3, 4):
        done = subprocess.run(
            [sys.executable, "-c", script, schema_settings.postgres_schema, str(item), *skus],
            check=False,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        results.append(CommandResult.model_validate_json(done.stdout.strip().splitlines()[-1]))
    assert [r.replayed for r in results] == [False, True, True, True]
    assert {(r.aggregate_id, r.version) for r in results} == {(item, 1)}
