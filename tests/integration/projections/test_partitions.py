"""Partitions added to a topic while the pipeline runs: no doubled effect, no reordering.

Issue 15 (5a): documents guard per partition, so an event that a relay
re-sent after the topic gained partitions landed on another partition and
took effect twice; and an aggregate whose events straddled the change was
applied out of version order.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewPartitions
from elasticsearch import Elasticsearch

from cqrskit import Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.postgres.reader import store_head
from cqrskit.runtime import Runtime
from cqrskit.topology import Topology
from examples.shop import InventoryItem, Order, OrderLine, ShopApp
from projections import CustomerOrdersProjection
from tests.integration.conftest import REPO_ROOT
from tests.integration.projections.conftest import Pipeline
from tests.integration.projections.trail import VersionTrail
from tests.integration.relay.conftest import CommandStream, RelayHarness, wait_until

LINE = OrderLine(sku="tea", quantity=1, unit_price=Decimal("100.00"))
BEFORE, AFTER = 3, 7


@pytest.fixture
def relays(pipeline: Pipeline) -> Iterator[RelayHarness]:
    """Relay processes on the pipeline's schema and topics, killed afterwards."""
    harness = RelayHarness(pipeline.settings, pipeline.settings.topic_prefix or "", pipeline.tmp)
    try:
        yield harness
    finally:
        harness.stop_all()


def with_partitions(pipeline: Pipeline, relays: RelayHarness, count: int) -> Settings:
    """Topics of this pipeline are created with ``count`` partitions."""
    pipeline.settings = relays.settings = pipeline.settings.model_copy(
        update={"topic_partitions": count, "relay_page_size": 500}
    )
    pipeline.extra_env["CQRSKIT_TOPIC_PARTITIONS"] = str(count)
    return pipeline.settings


def cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    """One ``cqrskit`` command on the pipeline's services, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cqrskit.cli", *args],
        env=pipeline.env(),
        cwd=REPO_ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def add_partitions(settings: Settings, topics: Iterable[str], count: int) -> None:
    """What an operator does with Kafka's own tools: raise the partition count."""
    admin = kafka_backend.admin(settings)
    futures = admin.create_partitions([NewPartitions(t, count) for t in topics])
    for future in futures.values():
        future.result(timeout=30)


def topic_of(settings: Settings, aggregate_type: str) -> str:
    return Topology.of(settings, "shop").topic(aggregate_type)


def partitions_by_position(settings: Settings, topic: str) -> dict[int, list[int]]:
    """Every event on ``topic``: position -> the partitions it was found on (once per copy)."""
    consumer = Consumer(
        {**kafka_backend.base_config(settings), "group.id": "unused", "enable.auto.commit": False}
    )
    found: dict[int, list[int]] = {}
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1]
            for p in metadata.partitions
        }
        todo = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in todo])
        while todo:
            messages = consumer.consume(1000, timeout=5)
            if not messages:
                # A relay transaction's commit marker may end a partition: it is
                # never returned as a message, but the position passes it.
                for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
                    if tp.offset >= ends[tp.partition]:
                        todo.discard(tp.partition)
            for message in messages:
                if message.error() is not None:
                    continue
                partition, offset = int(message.partition() or 0), int(message.offset() or 0)
                if offset + 1 >= ends[partition]:
                    todo.discard(partition)
                headers = kafka_backend.headers_of(message)
                if headers.get("event_type") != b"cqrskit.watermark":
                    found.setdefault(int(headers["position"]), []).append(partition)
    finally:
        consumer.close()
    return found


def orders(settings: Settings, count: int, first: int) -> None:
    """``count`` orders of 100.00, each by a customer of its own."""
    with ShopApp(settings) as app:
        app.save(*[Order(customer_id=f"c-{i}", lines=[LINE]) for i in range(first, first + count)])


def test_a_tail_resent_after_partitions_were_added_takes_effect_once(
    pipeline: Pipeline, relays: RelayHarness, es: Elasticsearch
) -> None:
    settings = with_partitions(pipeline, relays, BEFORE)
    projection = CustomerOrdersProjection()
    relay = relays.start()
    orders(settings, 100, first=0)
    pipeline.start_worker(projection.name)
    pipeline.wait_applied(projection)
    recorded = store_head(settings, "shop")

    # A relay that sent a page and was killed before recording it: frozen,
    # its table locked, then let go to send the page it cannot record.
    relay.proc.send_signal(signal.SIGSTOP)
    with pg_backend.connect(settings) as lock, lock.transaction():
        lock.execute(f'LOCK TABLE "{settings.postgres_schema}".cqrskit_relay IN EXCLUSIVE MODE')
        orders(settings, 300, first=100)
        relay.proc.send_signal(signal.SIGCONT)
        tail = set(range(recorded + 1, store_head(settings, "shop") + 1))
        order_topic = topic_of(settings, "Order")
        wait_until(
            lambda: tail <= partitions_by_position(settings, order_topic).keys(),
            60,
            "the relay to send the tail it cannot record",
        )
        wait_until(
            lambda: (Runtime(settings).projection_status("shop", projection).lag or 0) == 0,
            60,
            "the worker to apply the tail",
        )
        relay.kill9()
        # Its UPDATE still waits in its server process, which has not yet
        # noticed that the client is gone: end it, as a dead socket would.
        lock.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE relation = %s::regclass AND NOT granted",
            [f'"{settings.postgres_schema}".cqrskit_relay'],
        )

    add_partitions(settings, [order_topic], AFTER)
    relays.start()  # sends the unrecorded tail again
    pipeline.wait_applied(projection)

    copies = partitions_by_position(settings, order_topic)
    resent = {p: parts for p, parts in copies.items() if len(parts) > 1}
    assert resent.keys() == tail, "the tail was not sent twice: the test proves nothing"
    totals = pipeline.actual(es, projection)
    doubled = {c: d["orders_placed"] for c, d in totals.items() if d["orders_placed"] != 1}
    assert not doubled, f"{len(doubled)} customers counted twice, e.g. {list(doubled.items())[:3]}"
    assert sum(Decimal(d["amount_ordered"]) for d in totals.values()) == Decimal(400 * 100)


def restocked_items(settings: Settings, items: int, restocks: int) -> list[InventoryItem]:
    with ShopApp(settings) as app:
        stock = [InventoryItem(sku=f"sku-{n}", name="tea", quantity=0) for n in range(items)]
        for _ in range(restocks):
            for item in stock:
                item.restock(1)
        app.save(*stock)
    return stock


def restock_once(settings: Settings, stock: list[InventoryItem]) -> None:
    with ShopApp(settings) as app:
        for item in stock:
            item.restock(1)
        app.save(*stock)


def test_an_item_whose_events_straddle_a_partition_increase_is_applied_in_version_order(
    pipeline: Pipeline, relays: RelayHarness, es: Elasticsearch
) -> None:
    settings = with_partitions(pipeline, relays, BEFORE)
    pipeline.projections_module = "tests.integration.projections.trail"
    projection = VersionTrail()
    relay = relays.start()
    stock = restocked_items(settings, items=30, restocks=150)
    pipeline.wait_relayed()
    assert relay.terminate() == 0

    add_partitions(settings, [topic_of(settings, "InventoryItem")], AFTER)
    relays.start()
    restock_once(settings, stock)
    pipeline.wait_relayed()
    pipeline.start_worker(projection.name)
    pipeline.wait_applied(projection)

    trails = pipeline.actual(es, projection)
    assert len(trails) == 30
    disordered = {
        item: f"v152 applied as the {trail['versions'].index(152) + 1}th"
        for item, trail in trails.items()
        if trail["versions"] != sorted(trail["versions"])
    }
    assert not disordered, f"{len(disordered)} items out of order: {list(disordered.items())[:2]}"
    assert all(v["versions"] == list(range(1, 153)) for v in trails.values())


def test_partitions_added_under_load_leave_nothing_missing_or_doubled(
    pipeline: Pipeline, relays: RelayHarness, es: Elasticsearch
) -> None:
    settings = with_partitions(pipeline, relays, BEFORE)
    pipeline.projections_module = "tests.integration.projections.trail"
    relay = relays.start()
    names = (CustomerOrdersProjection.name, VersionTrail.name)
    pipeline.start_worker(*names)
    with CommandStream(settings) as stream:  # new orders, and restocks of 5 items
        wait_until(lambda: stream.accepted > 200, 120, "commands to flow")
        # The relay falls behind (frozen during a burst) and is killed part-way
        # through its backlog; the topics gain partitions before the next
        # relay starts and sends the unrecorded pages again.
        relay.proc.send_signal(signal.SIGSTOP)
        burst_from = store_head(settings, "shop")
        for first in range(0, 20_000, 2000):
            orders(settings, 2000, first=1_000_000 + first)
        relay.proc.send_signal(signal.SIGCONT)
        wait_until(
            lambda: pipeline.relay_position() > burst_from + 2000,
            120,
            "the relay to be part-way through the burst",
        )
        # Killed between a committed transaction and its record (the table
        # locked meanwhile), so the next relay sends that transaction again.
        with pg_backend.connect(settings) as lock, lock.transaction():
            table = f'"{settings.postgres_schema}".cqrskit_relay'
            lock.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
            (recorded,) = lock.execute(
                f"SELECT position FROM {table} WHERE application = 'shop'"
            ).fetchone() or (0,)
            wait_until(
                lambda: (
                    max(partitions_by_position(settings, topic_of(settings, "Order")))
                    > recorded + 500
                ),
                120,
                "the relay to commit what it cannot record",
            )
            relay.kill9()
            lock.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE relation = %s::regclass AND NOT granted",
                [table],
            )
        add_partitions(
            settings, [topic_of(settings, "Order"), topic_of(settings, "InventoryItem")], AFTER
        )
        relays.start()
        wait_until(lambda: stream.accepted > 600, 120, "commands to flow after the crash")
        # Then the move onto the added partitions, while commands flow and
        # the worker reads across it.
        assert "-> 7 partitions" in repartition(pipeline)
        wait_until(
            lambda: used_partitions(settings, topic_of(settings, "Order")) == AFTER,
            120,
            "the relay to move the topics",
        )
        moved_at = stream.accepted
        wait_until(lambda: stream.accepted > moved_at + 300, 120, "commands to flow after it")
    assert not stream.errors, stream.errors[:3]
    for projection in (CustomerOrdersProjection(), VersionTrail()):
        pipeline.wait_applied(projection)
        verified = cli(pipeline, "projections", "verify", projection.name)
        assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
    copies = partitions_by_position(settings, topic_of(settings, "Order"))
    assert any(len(p) > 1 for p in copies.values()), "nothing was re-sent: the test proves nothing"
    assert any(p >= BEFORE for parts in copies.values() for p in parts), "nothing moved"
    totals = pipeline.actual(es, CustomerOrdersProjection())
    placed = Counter(d["orders_placed"] for d in totals.values())
    assert placed.keys() == {1}, f"customers by orders counted: {dict(placed)}"


def repartition(pipeline: Pipeline) -> str:
    """``cqrskit relay repartition``, as an operator runs it."""
    done = cli(pipeline, "relay", "repartition")
    assert done.returncode == 0, done.stderr
    return done.stdout


def used_partitions(settings: Settings, topic: str) -> int:
    (layout,) = [s for s in Runtime(settings).layout_status("shop") if s.topic == topic]
    return layout.used


def test_a_move_onto_added_partitions_applies_each_item_once_and_in_version_order(
    pipeline: Pipeline, relays: RelayHarness, es: Elasticsearch
) -> None:
    settings = with_partitions(pipeline, relays, BEFORE)
    pipeline.projections_module = "tests.integration.projections.trail"
    projection = VersionTrail()
    topic = topic_of(settings, "InventoryItem")
    relay = relays.start()
    stock = restocked_items(settings, items=30, restocks=150)
    pipeline.wait_relayed()
    add_partitions(settings, [topic], AFTER)

    assert f"{topic}: {BEFORE} -> {AFTER} partitions" in repartition(pipeline)
    wait_until(lambda: used_partitions(settings, topic) == AFTER, 60, "the relay to move the topic")
    restock_once(settings, stock)
    pipeline.wait_relayed()
    relay.kill9()  # its last pages are sent again, on the partitions they took first
    relays.start()
    restock_once(settings, stock)
    pipeline.wait_relayed()
    pipeline.start_worker(projection.name)
    pipeline.wait_applied(projection)

    on = {p for parts in partitions_by_position(settings, topic).values() for p in parts}
    assert on & set(range(BEFORE, AFTER)), "no event went to an added partition: nothing moved"
    trails = pipeline.actual(es, projection)
    assert len(trails) == 30
    wrong = {
        item: _where_it_differs(t["versions"], list(range(1, 154)))
        for item, t in trails.items()
        if t["versions"] != list(range(1, 154))
    }
    assert not wrong, f"{len(wrong)} items applied out of order or twice: {list(wrong.items())[:2]}"


def _where_it_differs(got: list[int], want: list[int]) -> str:
    """The first place two version trails part, with a few versions around it."""
    at = next((i for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w), None)
    if at is None:
        at = min(len(got), len(want))
    return f"{len(got)} versions; from index {at}: got {got[at : at + 5]}, want {want[at : at + 5]}"
