"""Positions become visible in commit order, whatever the configuration (issue 15).

A reader of the outbox (the relay) that has seen position N must never later
see a committed position below N. Each test holds an earlier append's
transaction open on purpose and shows that a later append cannot make its
position readable before the earlier one commits.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from cqrskit import Settings
from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.postgres.event_store import PostgresEventRecorder
from examples.shop import Order, OrderLine, ShopApp

LINE = OrderLine(sku="tea", quantity=1, unit_price="2.00")  # type: ignore[arg-type]

#: An earlier append, left uncommitted on ``conn``: the outbox's locked path
#: (lock, insert), or eventsourcing's database function.
Holder = Callable[[psycopg.Connection[tuple[Any, ...]], PostgresEventRecorder], None]


def _locked_insert(
    conn: psycopg.Connection[tuple[Any, ...]], recorder: PostgresEventRecorder
) -> None:
    events = Identifier(recorder.datastore.schema, recorder.events_table_name)
    conn.execute(SQL("LOCK TABLE {0} IN EXCLUSIVE MODE").format(events))
    conn.execute(
        SQL(
            "INSERT INTO {0} (originator_id, originator_version, topic, state) "
            "VALUES (%s, 1, 'examples.shop.domain:Order.Placed', '{{}}')"
        ).format(events),
        [uuid.uuid4()],
    )


def _database_function(
    conn: psycopg.Connection[tuple[Any, ...]], recorder: PostgresEventRecorder
) -> None:
    schema = recorder.datastore.schema
    conn.execute(
        SQL(
            "SELECT * FROM {function}(ARRAY[ROW(%s::uuid, 1, "
            "'examples.shop.domain:Order.Placed', '{{}}'::bytea)::{event_type}])"
        ).format(
            function=Identifier(schema, recorder.pg_function_name_insert_events),
            event_type=Identifier(schema, recorder.stored_event_type_name),
        ),
        [uuid.uuid4()],
    )


@pytest.fixture
def app(schema_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[ShopApp]:
    # eventsourcing reads the switch from the process environment too.
    monkeypatch.setenv("POSTGRES_ENABLE_DB_FUNCTIONS", "y")
    application = ShopApp(schema_settings)
    assert application.factory.datastore.enable_db_functions  # type: ignore[attr-defined]
    yield application
    application.close()


def _visible(settings: Settings) -> list[int]:
    with pg_backend.connect(settings) as conn:
        rows = conn.execute(
            f'SELECT notification_id FROM "{settings.postgres_schema}".shop_events ORDER BY 1'
        ).fetchall()
    return [int(r[0]) for r in rows]


def _waiting_for_a_lock(settings: Settings) -> bool:
    with pg_backend.connect(settings) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
            [f'"{settings.postgres_schema}".shop_events'],
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize(
    "earlier", [_locked_insert, _database_function], ids=["locked", "function"]
)
def test_no_position_is_readable_before_an_earlier_one_commits_with_database_functions_enabled(
    app: ShopApp, earlier: Holder
) -> None:
    settings = app.settings
    recorder = app.recorder
    assert isinstance(recorder, PostgresEventRecorder)
    saved = threading.Event()
    failures: list[BaseException] = []

    def later_append() -> None:
        try:
            app.save(Order(customer_id="later", lines=[LINE]))
        except BaseException as exc:  # reported by the test
            failures.append(exc)
        finally:
            saved.set()

    with pg_backend.connect(settings, autocommit=False) as holder:
        earlier(holder, recorder)  # position 1, not committed
        writer = threading.Thread(target=later_append, daemon=True)
        writer.start()
        deadline = time.monotonic() + 30
        while not (saved.is_set() or _waiting_for_a_lock(settings)):
            assert time.monotonic() < deadline, "the later append neither finished nor waited"
            saved.wait(0.02)
        seen_while_open = _visible(settings)
        holder.commit()
    writer.join(timeout=30)
    assert not failures, failures
    assert seen_while_open == [], (
        f"the reader saw positions {seen_while_open} while position 1 was not committed"
    )
    assert _visible(settings) == [1, 2]
