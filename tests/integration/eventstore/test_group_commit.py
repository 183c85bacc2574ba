"""Concurrent appends committed in groups: shared commits, separate outcomes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError, OperationalError, StoredEvent
from psycopg.sql import SQL

from cqrskit import CommandBus, CommandResult, Settings
from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.postgres.event_store import PostgresEventRecorder, _Append
from cqrskit.eventstore import IdempotencyRecord
from examples.shop import Order, PlaceOrder, ShopApp, handlers

ORDER = PlaceOrder(customer_id="ada", lines=[{"sku": "tea", "quantity": 1, "unit_price": "2.00"}])


@pytest.fixture
def app(schema_settings: Settings) -> Iterator[ShopApp]:
    application = ShopApp(schema_settings.model_copy(update={"postgres_pool_size": 40}))
    yield application
    application.close()


def recorder_of(app: ShopApp) -> PostgresEventRecorder:
    recorder = app.recorder
    assert isinstance(recorder, PostgresEventRecorder)
    return recorder


def stored(app: ShopApp, customer: str) -> StoredEvent:
    (event,) = Order(customer_id=customer, lines=ORDER.lines).collect_events()
    return app.mapper.to_stored_event(event)


def keyed(key: str, event: StoredEvent) -> IdempotencyRecord:
    return IdempotencyRecord(
        key, f"hash-{key}", "PlaceOrder", UUID(str(event.originator_id)), 1, None
    )


def test_concurrent_writers_share_commits_and_each_gets_its_own_position(app: ShopApp) -> None:
    bus = CommandBus(app, handlers)
    results: list[CommandResult] = []
    barrier = threading.Barrier(32)
    lock = threading.Lock()

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(20):
            key = f"w{n}-{i}" if i % 2 else None
            result = bus.dispatch(ORDER, idempotency_key=key)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 640
    positions = sorted(r.position for r in results if r.position is not None)
    assert len(set(positions)) == 640
    table = f'"{app.settings.postgres_schema}".shop_events'
    with pg_backend.connect(app.settings) as conn:
        ids = [row[0] for row in conn.execute(f"SELECT notification_id FROM {table} ORDER BY 1")]
        keys_table = f'"{app.settings.postgres_schema}".shop_idempotency'
        keys = conn.execute(f"SELECT count(*), count(position) FROM {keys_table}").fetchone()
    assert ids == positions  # every stored event is a result's, and each result's is stored
    assert keys == (320, 320)
    transactions, appends = recorder_of(app).group_commits
    assert appends == 640
    assert transactions < appends  # appends that met in time shared a transaction


def test_each_append_of_one_group_succeeds_or_fails_on_its_own(app: ShopApp) -> None:
    recorder = recorder_of(app)
    x, y, z = stored(app, "x"), stored(app, "y"), stored(app, "z")
    recorder.insert_events([z])  # z's first version is taken before the group
    a = _Append([x], None)  # fine
    b = _Append([x], None)  # the same version as a, in the same group: loses to a
    c = _Append([y], keyed("k1", y))  # fine, with a key
    d = _Append([stored(app, "d")], keyed("k1", y))  # c's key again
    e = _Append([z], keyed("k2", z))  # conflicts with the stored z: its key must not stay
    recorder._commit_group([a, b, c, d, e])

    assert a.error is None
    assert c.error is None
    assert a.ids is not None
    assert c.ids is not None
    for failed in (b, d, e):
        assert isinstance(failed.error, IntegrityError), failed.error
    assert "taken" in str(d.error)
    assert str(z.originator_id) in str(e.error)
    assert len(recorder.select_events(x.originator_id)) == 1
    assert len(recorder.select_events(z.originator_id)) == 1
    assert recorder.select_events(d.events[0].originator_id) == []
    k1 = recorder.select_idempotency("k1")
    assert k1 is not None
    assert k1.position == c.ids[0]
    assert recorder.select_idempotency("k2") is None
    notifications = recorder.select_notifications(start=1, limit=10)
    assert [n.originator_id for n in notifications] == [
        z.originator_id,
        x.originator_id,
        y.originator_id,
    ]


def test_a_failed_transaction_fails_every_append_waiting_on_it(app: ShopApp) -> None:
    recorder = recorder_of(app)
    recorder.lock_table_statements[0] = SQL("SET LOCAL lock_timeout = '1s'")
    events = [stored(app, f"c{n}") for n in range(4)]
    errors: list[Exception] = []
    lock = threading.Lock()

    def append(event: StoredEvent) -> None:
        try:
            recorder.insert_events([event], idempotency=keyed(f"key-{event.originator_id}", event))
        except OperationalError as exc:
            with lock:
                errors.append(exc)

    table = f'"{app.settings.postgres_schema}".shop_events'
    with pg_backend.connect(app.settings) as conn, conn.transaction():
        # Another transaction holds the table lock past the appends' lock time-out.
        conn.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        threads = [threading.Thread(target=append, args=(e,)) for e in events]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert len(errors) == 4
    assert all("lock" in str(e) for e in errors)
    for event in events:
        assert recorder.select_events(event.originator_id) == []
        assert recorder.select_idempotency(f"key-{event.originator_id}") is None
    assert recorder.insert_events([events[0]])  # and the recorder goes on
