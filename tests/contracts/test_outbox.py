"""The Outbox port's contract, run against the in-memory outbox and PostgreSQL's.

What the relay relies on (decision 0008): one session leads at a time; only
the leading session records or heartbeats; a position survives sessions; a
leader whose lease expired can be ended, and can record nothing after; a
closed or ended session raises LostSession; layouts are pinned once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Protocol

import orjson
import pytest
from psycopg.sql import SQL, Identifier

from cqrskit import Settings, check_services
from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.memory.outbox import MemoryEvents, MemoryOutbox
from cqrskit.adapters.postgres.outbox import PostgresOutbox
from cqrskit.errors import LostSession, PermanentError
from cqrskit.eventstore import Application
from cqrskit.relay import BEFORE_FIRST, Outbox
from cqrskit.runtime import Runtime
from cqrskit.topology import Topology

APP = "contract"
TOPIC = "examples.shop.domain:Order.Created"


class Store(Protocol):
    """One implementation's store: outboxes on it, and a way to append events."""

    def outbox(self, relay_name: str = "default") -> Outbox: ...

    def append(self, count: int) -> None: ...


def _state() -> bytes:
    return orjson.dumps({"timestamp": datetime.now(UTC).isoformat(), "sku": "tea"})


class _MemoryStore:
    def __init__(self) -> None:
        self.events = MemoryEvents()

    def outbox(self, relay_name: str = "default") -> Outbox:
        return MemoryOutbox(self.events, relay_name)

    def append(self, count: int) -> None:
        for version in range(1, count + 1):
            self.events.append(str(uuid.uuid4()), version, TOPIC, _state())


class _ContractApp(Application):
    name = APP


class _PostgresStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        Runtime(settings).init_schema(_ContractApp)  # what 'cqrskit db init' runs
        self.table = Identifier(settings.postgres_schema, Topology.of(settings, APP).events_table)

    def outbox(self, relay_name: str = "default") -> Outbox:
        return PostgresOutbox(self.settings, APP, relay_name)

    def append(self, count: int) -> None:
        insert = SQL(
            "INSERT INTO {events} (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s)"
        ).format(events=self.table)
        with pg_backend.connect(self.settings) as conn:
            for version in range(1, count + 1):
                conn.execute(insert, [uuid.uuid4(), version, TOPIC, _state()])


class OutboxContract:
    """The behaviour of every Outbox; subclasses provide ``store``."""

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        raise NotImplementedError

    @pytest.fixture
    def outbox(self, store: Store) -> Iterator[Outbox]:
        outbox = store.outbox()
        outbox.connect()
        yield outbox
        outbox.close()

    def test_reads_the_events_after_a_position_in_commit_order(
        self, store: Store, outbox: Outbox
    ) -> None:
        store.append(5)
        rows = outbox.read(BEFORE_FIRST, 10)
        positions = [row[0] for row in rows]
        assert positions == sorted(positions)
        assert len(positions) == 5
        assert [row[0] for row in outbox.read(positions[1], 2)] == positions[2:4]
        assert rows[0][2] == 1
        assert rows[0][3] == TOPIC
        assert orjson.loads(bytes(rows[0][4]))["sku"] == "tea"

    def test_the_position_starts_before_the_first_and_survives_sessions(
        self, store: Store, outbox: Outbox
    ) -> None:
        assert outbox.position() == BEFORE_FIRST
        assert outbox.try_lead("a:1")
        assert outbox.record(3)
        outbox.close()
        later = store.outbox()
        later.connect()
        try:
            assert later.position() == 3
        finally:
            later.close()

    def test_only_one_session_leads_and_only_the_leader_records(
        self, store: Store, outbox: Outbox
    ) -> None:
        standby = store.outbox()
        standby.connect()
        try:
            assert outbox.try_lead("a:1")
            assert not standby.try_lead("b:2")
            assert not standby.record(7)
            assert not standby.heartbeat()
            assert outbox.heartbeat()
            assert outbox.record(2)
            assert standby.position() == 2
        finally:
            standby.close()

    def test_relays_of_other_names_keep_their_own_lead_and_position(
        self, store: Store, outbox: Outbox
    ) -> None:
        other = store.outbox("other")
        other.connect()
        try:
            assert outbox.try_lead("a:1")
            assert other.try_lead("b:2")
            assert other.record(4)
            assert outbox.position() == BEFORE_FIRST
        finally:
            other.close()

    def test_closing_the_leader_lets_a_standby_lead(self, store: Store, outbox: Outbox) -> None:
        standby = store.outbox()
        standby.connect()
        try:
            assert outbox.try_lead("a:1")
            outbox.close()
            assert standby.try_lead("b:2")
        finally:
            standby.close()

    def test_a_leader_whose_lease_expired_is_ended_and_records_nothing_after(
        self, store: Store, outbox: Outbox
    ) -> None:
        standby = store.outbox()
        standby.connect()
        try:
            assert outbox.try_lead("a:1")
            assert standby.end_silent_leader(lease=60) is None  # not silent for that long
            time.sleep(0.1)
            assert standby.end_silent_leader(lease=0.01) is not None
            with pytest.raises(LostSession):
                outbox.record(9)
            assert standby.try_lead("b:2")
            assert standby.position() == BEFORE_FIRST
        finally:
            standby.close()

    def test_a_closed_outbox_raises_lost_session(self, store: Store) -> None:
        outbox = store.outbox()
        outbox.connect()
        outbox.close()
        with pytest.raises(LostSession):
            outbox.position()

    def test_lag_counts_the_events_after_the_position(self, store: Store, outbox: Outbox) -> None:
        assert outbox.lag(BEFORE_FIRST)[:2] == (0, 0)
        store.append(4)
        first = outbox.read(BEFORE_FIRST, 1)[0][0]
        head, events, seconds = outbox.lag(first)
        assert events == 3
        assert head == first + 3
        assert 0.0 <= seconds < 60

    def test_waiting_for_events_returns_within_its_timeout(self, outbox: Outbox) -> None:
        assert outbox.try_lead("a:1")
        started = time.monotonic()
        outbox.wait_for_events(0.2)
        assert time.monotonic() - started < 5

    def test_a_layout_is_pinned_once_and_moves_are_adopted(self, outbox: Outbox) -> None:
        topology = Topology.of(Settings(), APP)
        topic = topology.topic("Order")
        layouts = outbox.layouts()
        assert layouts.pin(topic, 3).partitions == 3
        assert layouts.pin(topic, 5).partitions == 3  # kept whatever Kafka has now
        with pytest.raises(PermanentError):
            layouts.pin(topic, 2)
        moved = layouts.adopt(topic, 10, 6)
        assert moved.steps == ((BEFORE_FIRST, 3), (10, 6))
        assert layouts.load_all(topology.topic_start)[topic] == moved
        assert layouts.pending_moves() == {}


class TestMemoryOutbox(OutboxContract):
    @pytest.fixture
    def store(self) -> Store:
        return _MemoryStore()


@pytest.mark.integration
class TestPostgresOutbox(OutboxContract):
    @pytest.fixture
    def store(self) -> Iterator[Store]:
        settings = Settings.load()
        (check,) = [c for c in check_services(settings) if c.service == "PostgreSQL"]
        if not check.ok:
            pytest.fail(f"this test needs the real PostgreSQL at {check.address}: {check.detail}")
        schema = f"contract_outbox_{uuid.uuid4().hex[:10]}"
        yield _PostgresStore(settings.model_copy(update={"postgres_schema": schema}))
        with pg_backend.connect(settings) as conn:
            conn.execute(SQL("DROP SCHEMA IF EXISTS {0} CASCADE").format(Identifier(schema)))
