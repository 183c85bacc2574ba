"""Saga runners that crash or lose PostgreSQL: no step is lost, none is done twice."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from uuid import UUID

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cqrskit import CommandBus, Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.postgres.reader import read_envelopes
from cqrskit.adapters.postgres.saga_store import PostgresSagaStore
from cqrskit.envelope import HEADER_EVENT_TYPE
from cqrskit.sagas import SagaInstance
from cqrskit.topology import Topology
from examples.shop import OrderLine, PlaceOrder, RefusePayment, ShopApp, handlers
from tests.integration.conftest import REPO_ROOT
from tests.integration.projections.conftest import Pipeline
from tests.integration.relay.conftest import wait_until
from tests.integration.sagas.conftest import Runner
from tests.integration.sagas.gifts import GiftHold


@pytest.fixture
def bus(pipeline: Pipeline) -> Iterator[CommandBus]:
    pipeline.start_relay()
    with ShopApp(pipeline.settings) as app:
        yield CommandBus(app, handlers)


def place(bus: CommandBus) -> UUID:
    line = OrderLine(sku="tea", quantity=1, unit_price=Decimal("3.00"))
    return bus.dispatch(PlaceOrder(customer_id="ada", lines=[line])).aggregate_id


def loaded(store: PostgresSagaStore, saga: str, order: UUID, status: str) -> SagaInstance | None:
    found = store.load(saga, str(order))
    return found if found is not None and found.status == status else None


def test_a_step_killed_between_sending_and_recording_is_finished_with_its_own_commands(
    pipeline: Pipeline, bus: CommandBus
) -> None:
    """Issue 15, hole 7c: the re-run built HoldGift with a new uuid4() and now(),
    met IdempotencyKeyReused, failed and cancelled the order, and the hold that
    had taken effect was never released."""
    crash = pipeline.tmp / "crash-once"
    crash.touch()
    runner = Runner(
        pipeline,
        sagas="tests.integration.sagas.gifts",
        saga="gift_workflow",
        env={"GIFTS_CRASH_FILE": str(crash)},
    )
    store = PostgresSagaStore(pipeline.settings, "shop")
    order = place(bus)
    runner.start()
    try:
        assert runner.proc is not None
        proc = runner.proc
        code = wait_until(proc.poll, 120, "the runner to be killed mid-step")
        assert code == -signal.SIGKILL
        assert not crash.exists()
        assert store.load("gift_workflow", str(order)) is None, "killed before recording"
        runner.start()
        instance = wait_until(
            lambda: store.load("gift_workflow", str(order)), 120, "the re-run to record the step"
        )
        history = [
            (h.kind, h.trigger, h.detail) for h in store.history("gift_workflow", str(order))
        ]
        assert instance.status == "running", history
        held = [
            e for e in read_envelopes(pipeline.settings, "shop") if e.event_type == "GiftHold.Held"
        ]
        assert [str(e.aggregate_id) for e in held] == [instance.state["hold_id"]]
        bus.dispatch(RefusePayment(order_id=order, reason="card declined"))
        wait_until(lambda: loaded(store, "gift_workflow", order, "failed"), 120, "compensation")
        hold = bus.application.repository.get(held[0].aggregate_id)
        assert isinstance(hold, GiftHold)
        assert hold.released, "the hold that took effect is compensated"
        assert bus.application.repository.get(order).status == "cancelled"
    finally:
        runner.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_runner_stopped_during_an_outage_commits_no_offset_it_did_not_handle(
    pipeline: Pipeline, bus: CommandBus
) -> None:
    """Issue 15, hole 7d: the runner gave up on the event in hand when told to
    stop, committed its offset anyway, and the next runner skipped it."""
    settings = pipeline.settings
    target = conninfo_to_dict(settings.postgres_dsn)
    port = free_port()
    forward = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.sagas.tcp_forward", str(port),
         str(target.get("host", "127.0.0.1")), str(target.get("port", 5432))],
        cwd=REPO_ROOT,
    )  # fmt: skip
    # Mid-step, the runner's own command kills the forwarder: the outage
    # begins with the event in hand.
    outage = pipeline.tmp / "outage"
    outage.write_text(str(forward.pid))
    runner = Runner(
        pipeline,
        sagas="tests.integration.sagas.gifts",
        saga="gift_workflow",
        env={
            "CQRSKIT_POSTGRES_DSN": make_conninfo(settings.postgres_dsn, port=port),
            "GIFTS_CRASH_FILE": str(outage),
        },
    )
    store = PostgresSagaStore(settings, "shop")
    try:
        order = place(bus)
        runner.start()
        assert forward.wait(timeout=120) == -signal.SIGKILL
        wait_until(lambda: "retrying after" in runner.output(), 120, "the runner to hit the outage")
        runner.stop()
        # Offsets of other messages (the relay's watermarks) may be committed;
        # the event's, left unhandled, must not be.
        topic = Topology.of(settings, "shop").topic("Order")
        partition, offset = _offset_of(settings, topic, "Order.Placed")
        committed = _committed(settings, f"{settings.topic_prefix}.saga.gift_workflow", topic)
        assert committed.get(partition, 0) <= offset, (committed, partition, offset)
        runner.env = {}
        runner.start()
        instance = wait_until(
            lambda: store.load("gift_workflow", str(order)), 120, "the event to be handled"
        )
        assert instance.state["step"] == "held"
    finally:
        runner.stop()
        if forward.poll() is None:
            forward.kill()
            forward.wait(timeout=30)


def _offset_of(settings: Settings, topic: str, event_type: str) -> tuple[int, int]:
    """Partition and offset of the first message of ``event_type`` on ``topic``."""
    consumer = Consumer({**kafka_backend.group_config(settings), "group.id": "unused"})
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        while True:
            message = consumer.poll(30)
            assert message is not None, f"no {event_type} on {topic}"
            if message.error() is not None:
                continue
            if kafka_backend.headers_of(message).get(HEADER_EVENT_TYPE) == event_type.encode():
                return int(message.partition() or 0), int(message.offset() or 0)
    finally:
        consumer.close()


def _committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """Offsets the group committed on ``topic``, by partition (absent: none)."""
    consumer = Consumer({**kafka_backend.group_config(settings), "group.id": group})
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        return {
            tp.partition: tp.offset
            for tp in consumer.committed(partitions, timeout=30)
            if tp.offset >= 0
        }
    finally:
        consumer.close()
