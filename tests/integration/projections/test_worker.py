"""Projection workers on the real stack: equal to a fresh fold, whatever is killed."""

from __future__ import annotations

import random
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from elasticsearch import Elasticsearch

from cqrskit import CommandBus, Envelope, Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.elasticsearch.checkpoints import ElasticsearchCheckpointReader
from cqrskit.adapters.kafka.dead_letters import KafkaDeadLetters as DeadLetterTopic
from cqrskit.adapters.postgres.reader import store_head
from cqrskit.queries import applied_position
from cqrskit.runtime import Runtime
from cqrskit.topology import IndexNames, Topology
from examples.shop import (
    AuthorisePayment,
    CancelOrder,
    CapturePayment,
    Order,
    OrderLine,
    PlaceOrder,
    RegisterItem,
    ReleaseStock,
    ReserveStock,
    ShopApp,
    handlers,
)
from projections import CustomerOrdersProjection, OrderSummaries, ProductSearch, StockLevels
from tests.integration.conftest import REPO_ROOT
from tests.integration.projections.conftest import Pipeline, Worker
from tests.integration.projections.poison import PoisonNotes
from tests.integration.projections.poison_ids import VisitsByCustomer
from tests.integration.projections.refused import LastSkus
from tests.integration.relay.conftest import wait_until

ELASTICSEARCH = ["bash", str(REPO_ROOT / "scripts" / "elasticsearch.sh")]
ALL = (OrderSummaries(), CustomerOrdersProjection(), StockLevels(), ProductSearch())


def shop_burst(settings: Settings, orders: int, seed: int = 7) -> None:
    """A realistic mix: items, orders, reservations, payments, cancellations."""
    rng = random.Random(seed)
    with ShopApp(settings) as app:
        bus = CommandBus(app, handlers)
        items = [
            bus.dispatch(RegisterItem(sku=f"sku-{n}", name=f"green tea no. {n}", quantity=10_000))
            for n in range(5)
        ]
        for n in range(orders):
            item = rng.choice(items)
            quantity = rng.randint(1, 3)
            line = OrderLine(sku=f"sku-{n % 5}", quantity=quantity, unit_price=Decimal("2.50"))
            order = bus.dispatch(PlaceOrder(customer_id=f"customer-{n % 12}", lines=[line]))
            bus.dispatch(
                ReserveStock(
                    item_id=item.aggregate_id, order_id=order.aggregate_id, quantity=quantity
                )
            )
            fate = rng.random()
            if fate < 0.5:
                amount = line.unit_price * quantity
                payment = bus.dispatch(AuthorisePayment(order_id=order.aggregate_id, amount=amount))
                if fate < 0.35:
                    bus.dispatch(CapturePayment(payment_id=payment.aggregate_id))
            elif fate < 0.7:
                bus.dispatch(CancelOrder(order_id=order.aggregate_id, reason="changed my mind"))
                bus.dispatch(ReleaseStock(item_id=item.aggregate_id, order_id=order.aggregate_id))


def bulk_orders(settings: Settings, orders: int, customers: int = 50) -> None:
    """Many orders fast (many aggregates per transaction), customers repeating."""
    line = OrderLine(sku="tea", quantity=1, unit_price=Decimal("1.00"))
    with ShopApp(settings) as app:
        for start in range(0, orders, 1000):
            app.save(
                *[
                    Order(customer_id=f"c-{i % customers}", lines=[line])
                    for i in range(start, min(orders, start + 1000))
                ]
            )


def assert_equal_to_fold(pipeline: Pipeline, es: Elasticsearch, *projections: object) -> None:
    for projection in projections or ALL:
        expected = pipeline.expected(projection)  # type: ignore[arg-type]
        actual = pipeline.actual(es, projection)  # type: ignore[arg-type]
        assert expected, f"{projection} folded to nothing"
        missing = expected.keys() - actual.keys()
        extra = actual.keys() - expected.keys()
        different = [k for k in expected.keys() & actual.keys() if expected[k] != actual[k]]
        name = projection.name  # type: ignore[attr-defined]
        assert not missing, f"{name}: {len(missing)} documents missing, e.g. {list(missing)[:3]}"
        assert not extra, f"{name}: {len(extra)} documents extra, e.g. {list(extra)[:3]}"
        assert not different, f"{name}: {len(different)} documents differ, e.g. {different[:3]}"


def test_after_a_burst_every_read_model_equals_a_fresh_fold(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    pipeline.start_relay()
    pipeline.start_worker(*(p.name for p in ALL))
    shop_burst(pipeline.settings, orders=150)
    for projection in ALL:
        pipeline.wait_applied(projection)
    assert_equal_to_fold(pipeline, es)


def test_a_worker_killed_mid_batch_leaves_nothing_missing_or_doubled(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    bulk_orders(pipeline.settings, 30_000)
    pipeline.start_relay()
    pipeline.wait_relayed()
    projection = CustomerOrdersProjection()
    first = pipeline.start_worker(projection.name)

    def mid_way() -> bool:
        status = pipeline.status(projection)
        return status is not None and status.position > 0 and (status.lag or 0) > 0

    wait_until(mid_way, 120, "the worker to be part-way through")
    first.kill9()
    pipeline.start_worker(projection.name)
    pipeline.wait_applied(projection)
    assert_equal_to_fold(pipeline, es, projection)
    totals = pipeline.actual(es, projection)
    assert sum(d["orders_placed"] for d in totals.values()) == 30_000  # none doubled


def test_elasticsearch_stopped_and_restarted_mid_stream(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    pipeline.start_relay()
    projection = StockLevels()
    worker = pipeline.start_worker(projection.name, OrderSummaries.name)
    shop_burst(pipeline.settings, orders=40, seed=1)
    pipeline.wait_applied(projection)
    subprocess.run([*ELASTICSEARCH, "stop"], check=True, timeout=180)
    try:
        shop_burst(pipeline.settings, orders=60, seed=2)  # events keep flowing meanwhile
        pipeline.wait_relayed()
    finally:
        subprocess.run([*ELASTICSEARCH, "start"], check=True, timeout=300)
    pipeline.wait_applied(projection)
    pipeline.wait_applied(OrderSummaries())
    assert worker.proc.poll() is None, "the worker died while Elasticsearch was away"
    assert_equal_to_fold(pipeline, es, projection, OrderSummaries())


def test_two_workers_share_the_partitions_with_the_same_result(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    projection = CustomerOrdersProjection()
    pipeline.start_relay()
    first = pipeline.start_worker(projection.name)
    second = pipeline.start_worker(projection.name)
    wait_until(lambda: "assigned" in first.output(), 60, "the first worker's partitions")
    wait_until(lambda: "assigned" in second.output(), 60, "the second worker's partitions")
    bulk_orders(pipeline.settings, 5_000)
    shop_burst(pipeline.settings, orders=50)
    pipeline.wait_applied(projection)
    assert_equal_to_fold(pipeline, es, projection)


def poison_among_good(pipeline: Pipeline, good: int) -> tuple[list[Any], Any, list[Any]]:
    """Orders before, the poison (its handler fails in the worker only), orders after."""
    pipeline.projections_module = "tests.integration.projections.poison"
    pipeline.extra_env["POISON_IS_POISONOUS"] = "yes"  # the bug, in the worker only
    pipeline.start_relay()
    with ShopApp(pipeline.settings) as app:
        bus = CommandBus(app, handlers)
        line = OrderLine(sku="tea", quantity=1, unit_price=Decimal("1.00"))
        before = [bus.dispatch(PlaceOrder(customer_id=f"c{i}", lines=[line])) for i in range(good)]
        poison = bus.dispatch(PlaceOrder(customer_id="poison", lines=[line]))
        after = [bus.dispatch(PlaceOrder(customer_id=f"d{i}", lines=[line])) for i in range(good)]
    return before, poison, after


def test_a_poison_event_is_dead_lettered_and_the_rest_goes_on(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    projection = PoisonNotes()
    before, poison, after = poison_among_good(pipeline, 5)
    worker = pipeline.start_worker(projection.name)
    pipeline.wait_applied(projection)
    docs = pipeline.actual(es, projection)
    assert set(docs) == {str(r.aggregate_id) for r in before + after}
    topic = DeadLetterTopic(pipeline.settings, "shop", projection.name)
    letters, _ = topic.pending()
    assert len(letters) == 1
    assert "poison is not edible" in letters[0].error
    assert letters[0].headers["position"] == str(poison.position).encode()
    assert worker.proc.poll() is None

    # The handler is fixed (this process does not have the bug); replay.
    result = Runtime(pipeline.settings).replay_dead_letters("shop", PoisonNotes())
    assert (result.replayed, result.failed_again) == (1, 0)
    assert str(poison.aggregate_id) in pipeline.actual(es, projection)
    assert topic.pending()[0] == []
    again = Runtime(pipeline.settings).replay_dead_letters("shop", PoisonNotes())
    assert (again.replayed, again.failed_again) == (0, 0)


def test_status_reads_checkpoints_without_kafka_answering(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    projection = OrderSummaries()
    pipeline.start_relay()
    pipeline.start_worker(projection.name)
    shop_burst(pipeline.settings, orders=10)
    pipeline.wait_applied(projection)
    es.indices.refresh(
        index=f"{pipeline.settings.index_prefix}{projection.name}"
    )  # count is near-real-time
    away = pipeline.settings.model_copy(
        update={"kafka_bootstrap": "127.0.0.1:1", "connect_timeout": 1}
    )
    status = Runtime(away).projection_status("shop", projection)
    assert status.documents == 10
    assert status.position > 0
    assert status.lag is None
    assert "Kafka did not answer" in status.note


def test_malformed_and_foreign_messages_are_dead_lettered_and_the_worker_goes_on(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    projection = CustomerOrdersProjection()
    pipeline.start_relay()
    line = OrderLine(sku="tea", quantity=1, unit_price=Decimal("1.00"))
    with ShopApp(pipeline.settings) as app:
        bus = CommandBus(app, handlers)
        for i in range(5):
            bus.dispatch(PlaceOrder(customer_id=f"c{i}", lines=[line]))
    pipeline.wait_relayed()
    topic = f"{pipeline.settings.topic_prefix}.order"
    producer = Producer(kafka_backend.base_config(pipeline.settings))
    hostile: list[tuple[bytes, list[tuple[str, bytes]]]] = [
        (b"\x00\xff not json at all", []),  # foreign: no headers
        (b'{"event_id": "1", "payload": {', [("event_type", b"Order.Placed"), ("position", b"7")]),
        (b"{}", [("event_type", b"Order.Placed"), ("position", b"not-a-number")]),
        (b'{"hello": "world"}', [("event_type", b"Order.Placed"), ("position", b"8")]),
    ]
    for value, headers in hostile:
        producer.produce(topic, value=value, key=b"intruder", headers=headers)
    assert producer.flush(30) == 0
    worker = pipeline.start_worker(projection.name)
    with ShopApp(pipeline.settings) as app:
        bus = CommandBus(app, handlers)
        for i in range(5):
            bus.dispatch(PlaceOrder(customer_id=f"d{i}", lines=[line]))
    pipeline.wait_applied(projection)
    assert worker.proc.poll() is None, worker.output()[-2000:]
    letters, _ = DeadLetterTopic(pipeline.settings, "shop", projection.name).pending()
    reasons = sorted(letter.error for letter in letters)
    assert len(letters) == 4, reasons
    assert sum("no 'event_type' header" in r for r in reasons) == 1
    assert sum("'position' header" in r for r in reasons) == 1
    assert sum("not an event envelope" in r for r in reasons) == 2
    assert_equal_to_fold(pipeline, es, projection)


def wait_applied_or_dead(pipeline: Pipeline, worker: Worker, projection: Any) -> None:
    """Wait until the projection applied everything, or its worker process ended."""
    pipeline.wait_relayed()

    def done() -> bool:
        status = pipeline.status(projection)
        applied = status is not None and status.lag == 0 and status.partitions > 0
        return applied or worker.proc.poll() is not None

    wait_until(done, 180, f"{projection.name} to apply everything")
    assert worker.proc.poll() is None, worker.output()[-1500:]


def place(settings: Settings, *orders: tuple[str, str]) -> list[Order]:
    """Store one order per (customer, sku), bypassing the commands' validation."""
    made = [
        Order(customer_id=c, lines=[OrderLine(sku=s, quantity=1, unit_price=Decimal("1.00"))])
        for c, s in orders
    ]
    with ShopApp(settings) as app:
        app.save(*made)
    return made


def worker_after(
    pipeline: Pipeline, module: str, projection: Any, *orders: tuple[str, str]
) -> Worker:
    """A worker of ``projection`` (from ``module``) that applied ``orders``, still running."""
    pipeline.projections_module = module
    pipeline.start_relay()
    place(pipeline.settings, *orders)
    worker = pipeline.start_worker(projection.name)
    wait_applied_or_dead(pipeline, worker, projection)
    return worker


def test_an_event_whose_document_id_cannot_be_made_is_dead_lettered_and_the_worker_goes_on(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    projection = VisitsByCustomer()
    customers = ["ada", "legacy", "", "x" * 600, "bob"]
    module = "tests.integration.projections.poison_ids"
    worker_after(pipeline, module, projection, *[(c, "tea") for c in customers])
    assert set(pipeline.actual(es, projection)) == {"ada", "bob"}
    letters, _ = DeadLetterTopic(pipeline.settings, "shop", projection.name).pending()
    reasons = sorted(letter.error for letter in letters)
    assert len(letters) == 3, reasons
    assert any("KeyError: 'region'" in r for r in reasons), reasons
    assert any("empty" in r for r in reasons), reasons
    assert any("600 bytes" in r for r in reasons), reasons


def test_a_document_elasticsearch_refuses_is_dead_lettered_and_the_rest_is_applied(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    projection = LastSkus()
    module = "tests.integration.projections.refused"
    worker = worker_after(pipeline, module, projection, ("ada", "12"), ("mixed", "7"))
    (refused,) = place(pipeline.settings, ("mixed", "green-tea"))
    place(pipeline.settings, ("bob", "3"), ("ada", "5"))
    wait_applied_or_dead(pipeline, worker, projection)
    docs = pipeline.actual(es, projection)
    assert docs["mixed"] == {"customer_id": "mixed", "orders": 1, "last_sku": "7"}  # as it was
    assert (docs["ada"]["orders"], docs["bob"]["orders"]) == (2, 1)
    letters, _ = DeadLetterTopic(pipeline.settings, "shop", projection.name).pending()
    assert len(letters) == 1, [letter.error for letter in letters]
    assert letters[0].key == str(refused.id).encode()
    assert "document_parsing_exception" in letters[0].error
    assert "'mixed'" in letters[0].error
    assert "rebuild" in letters[0].error


def poison_behind_a_refusing_dead_letter_topic(pipeline: Pipeline) -> tuple[Any, Any, list[Any]]:
    """A poison event among good ones, and a dead-letter topic that refuses its letter.

    Returns the poison's command result, the admin client, and the good results.
    """
    admin = kafka_backend.admin(pipeline.settings)
    topic = Topology.of(pipeline.settings, "shop").dead_letter_topic(PoisonNotes.name)
    tiny = NewTopic(
        topic, num_partitions=1, replication_factor=1, config={"max.message.bytes": "64"}
    )
    admin.create_topics([tiny])[topic].result(timeout=30)
    before, poison, after = poison_among_good(pipeline, 3)
    return poison, admin, before + after


def wait_holding(pipeline: Pipeline, worker: Worker, poison: Any) -> None:
    """Wait until the worker says it holds the poison's dead letter, and check it holds."""
    topic = Topology.of(pipeline.settings, "shop").dead_letter_topic(PoisonNotes.name)
    pipeline.wait_relayed()

    def said_or_went_on() -> bool:
        status = pipeline.status(PoisonNotes())
        went_on = status is not None and status.lag == 0 and status.partitions > 0
        return went_on or f"dead letter of position {poison.position}" in worker.output()

    wait_until(said_or_went_on, 120, "the worker to hold, or to go on")
    log = worker.output()
    said = f"dead letter of position {poison.position}"
    assert said in log, log[-1500:]
    held = next(line for line in log.splitlines() if said in line)
    assert topic in held, held
    assert "too large" in held, held
    status = pipeline.status(PoisonNotes())
    assert status is not None
    assert status.lag, "the poison's offset was committed"
    assert DeadLetterTopic(pipeline.settings, "shop", PoisonNotes.name).pending()[0] == []
    assert worker.proc.poll() is None, log[-1500:]


def accept_large_letters(pipeline: Pipeline, admin: Any) -> None:
    topic = Topology.of(pipeline.settings, "shop").dead_letter_topic(PoisonNotes.name)
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes",
                "1048588",
                incremental_operation=AlterConfigOpType.SET,
            )
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)


def assert_lettered_and_applied(
    pipeline: Pipeline, es: Elasticsearch, poison: Any, good: Any
) -> None:
    pipeline.wait_applied(PoisonNotes())
    letters, _ = DeadLetterTopic(pipeline.settings, "shop", PoisonNotes.name).pending()
    assert [letter.headers["position"] for letter in letters] == [str(poison.position).encode()]
    assert "poison is not edible" in letters[0].error
    assert set(pipeline.actual(es, PoisonNotes())) == {str(r.aggregate_id) for r in good}


def test_a_dead_letter_topic_that_refuses_holds_the_worker_until_it_accepts(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    poison, admin, good = poison_behind_a_refusing_dead_letter_topic(pipeline)
    worker = pipeline.start_worker(PoisonNotes.name)
    wait_holding(pipeline, worker, poison)
    accept_large_letters(pipeline, admin)
    assert_lettered_and_applied(pipeline, es, poison, good)
    assert worker.proc.poll() is None, worker.output()[-1500:]


def test_a_worker_killed_while_holding_a_dead_letter_loses_nothing(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    poison, admin, good = poison_behind_a_refusing_dead_letter_topic(pipeline)
    first = pipeline.start_worker(PoisonNotes.name)
    wait_holding(pipeline, first, poison)
    first.kill9()
    accept_large_letters(pipeline, admin)
    pipeline.start_worker(PoisonNotes.name)
    assert_lettered_and_applied(pipeline, es, poison, good)


def forged_on_every_partition(settings: Settings, topic: str, position: int) -> None:
    """What a producer other than the relay might write: a watermark, an event type no
    projection handles, and a well-formed Order.Placed, each claiming ``position``."""
    admin = kafka_backend.admin(settings)
    partitions = admin.list_topics(topic, timeout=30).topics[topic].partitions
    placed = Envelope(
        event_id=uuid4(),
        event_type="Order.Placed",
        event_class="examples.shop.domain:Order.Placed",
        schema_version=1,
        aggregate_id=uuid4(),
        aggregate_type="Order",
        aggregate_version=1,
        position=position,
        occurred_at=datetime.now(UTC),
        payload={"customer_id": "forger", "lines": [], "total": "0"},
        metadata={},
    ).model_dump_json()
    said = str(position).encode()
    producer = Producer(kafka_backend.base_config(settings))
    for partition in partitions:
        mark = orjson.dumps({"watermark": position, "partitions": len(partitions)})
        for event_type, value in [
            (b"cqrskit.watermark", mark),
            (b"Order.Imagined", b"{}"),
            (b"Order.Placed", placed.encode()),
        ]:
            headers = [("event_type", event_type), ("position", said)]
            producer.produce(topic, value=value, partition=partition, headers=headers)
    assert producer.flush(30) == 0


def test_positions_are_believed_only_from_the_relays_own_messages(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    projection = OrderSummaries()
    pipeline.start_relay()
    worker = pipeline.start_worker(projection.name)
    shop_burst(pipeline.settings, orders=5)
    pipeline.wait_applied(projection)
    forged = store_head(pipeline.settings, "shop") + 1_000_000
    forged_on_every_partition(pipeline.settings, f"{pipeline.settings.topic_prefix}.order", forged)
    shop_burst(pipeline.settings, orders=3, seed=3)  # real events after the forged ones
    pipeline.wait_applied(projection)
    head = store_head(pipeline.settings, "shop")
    names = IndexNames.of(pipeline.settings)
    checkpoints = names.checkpoints_index
    es.indices.refresh(index=checkpoints)  # searched, so near-real-time
    status = pipeline.status(projection)
    assert status is not None
    assert status.position <= head, f"status says {status.position}, the head is {head}"
    assert (
        applied_position(
            ElasticsearchCheckpointReader(es, names.checkpoints_index), names, projection.name
        )
        <= head
    )
    letters, _ = DeadLetterTopic(pipeline.settings, "shop", projection.name).pending()
    assert letters, "the forged Order.Placed was not dead-lettered"
    assert all("not sealed by the relay" in letter.error for letter in letters)
    assert_equal_to_fold(pipeline, es, projection)
    assert worker.proc.poll() is None, worker.output()[-1500:]
