"""The benchmarks' fixtures on the real services: schemas, orders, topics, clean-up.

Each run fills its own schema with the example shop's orders, publishes
them with the product's own relay, reads them with the product's own
worker, and removes what it created. None of it is timed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from decimal import Decimal
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, TopicPartition
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier
from rich.console import Console

from _kit.measure import Watched
from _kit.product import (
    Runtime,
    es_backend,
    kafka_backend,
    pg_backend,
    read_status,
    store_head,
)
from cqrskit import OutboxRelay, Projection, ProjectionWorker, Settings
from examples.shop import Order, OrderLine, ShopApp

P = TypeVar("P", bound=Projection[Any])

APP_NAME = "shop"
#: Give up on an untimed step (publishing the store, a long rebuild) after this long.
RUN_TIMEOUT = 3600.0


@contextmanager
def fresh_schemas(settings: Settings, *names: str) -> Iterator[None]:
    """Create the schemas (the settings' own if none named); drop them, with their tables, after."""
    schemas = [Identifier(name) for name in names or (settings.postgres_schema,)]
    with pg_backend.connect(settings) as conn:
        for schema in schemas:
            conn.execute(SQL("CREATE SCHEMA {0}").format(schema))
    try:
        yield
    finally:
        with pg_backend.connect(settings) as conn:
            for schema in schemas:
                conn.execute(SQL("DROP SCHEMA IF EXISTS {0} CASCADE").format(schema))


def order_line(i: int) -> OrderLine:
    """The one line of order ``i``: quantities and prices vary, so do the totals."""
    return OrderLine(sku="tea", quantity=1 + i % 3, unit_price=Decimal(f"{1 + i % 7}.25"))


def fill_orders(
    settings: Settings, events: int, customers: int, chunk: int, console: Console
) -> float:
    """Append ``events`` new orders for ``customer-0``, ``customer-1``, ... in turn; the seconds.

    One ``Order.Placed`` event per order, ``chunk`` orders per transaction.
    """
    started = time.perf_counter()
    next_report = events // 4
    with ShopApp(settings) as app:
        for start in range(0, events, chunk):
            stop = min(events, start + chunk)
            app.save(
                *[
                    Order(customer_id=f"customer-{i % customers}", lines=[order_line(i)])
                    for i in range(start, stop)
                ]
            )
            if next_report <= stop < events:
                console.log(f"  filled {stop:,} / {events:,}")
                next_report += events // 4
    return time.perf_counter() - started


def fill_store(
    settings: Settings, events: int, customers: int, chunk: int, console: Console
) -> tuple[float, int]:
    """:func:`fill_orders` into a fresh store; its seconds and the store's head.

    Raises:
        RuntimeError: the store does not hold exactly ``events`` events.
    """
    console.log(
        f"filling schema {settings.postgres_schema} with {events:,} Order.Placed events for "
        f"{customers:,} customers ({chunk} per transaction)"
    )
    seconds = fill_orders(settings, events, customers, chunk, console)
    head = store_head(settings, APP_NAME)
    if head != events:
        raise RuntimeError(f"the store holds {head} events, expected {events}")
    return seconds, head


def eventsourcing_env(settings: Settings, schema: str, **extra: str) -> dict[str, str]:
    """The environment of a plain eventsourcing application on the same PostgreSQL."""
    params = conninfo_to_dict(settings.postgres_dsn)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname", "")),
        "POSTGRES_HOST": str(params.get("host", "localhost")),
        "POSTGRES_PORT": str(params.get("port", 5432)),
        "POSTGRES_USER": str(params.get("user", "")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
        "POSTGRES_SCHEMA": schema,
        **extra,
    }


# --- the relay and the worker, in a thread of this process --------------------------------


def relay_loop(settings: Settings, relay_name: str) -> tuple[OutboxRelay, Watched]:
    """The shop's ``OutboxRelay``, and its loop to time until its recorded position."""
    relay = Runtime(settings).relay(APP_NAME, relay_name)
    return relay, Watched("relay", relay.run, relay.stop, lambda: relay.position, poll=0.005)


def worker_loop(
    settings: Settings, projection: Projection[Any]
) -> tuple[ProjectionWorker, Watched]:
    """A ``ProjectionWorker``, and its loop to time until the events it committed."""
    worker = Runtime(settings).worker(APP_NAME, projection)
    return worker, Watched("worker", worker.run, worker.stop, lambda: worker.processed)


def publish_all(settings: Settings, head: int) -> float:
    """Publish the whole store with the shop's relay, then stop it; the seconds."""
    _relay, loop = relay_loop(settings, "bench")
    seconds = loop.until(head, RUN_TIMEOUT).seconds
    if read_status(settings, APP_NAME, "bench").position < head:
        raise RuntimeError("the relay did not record the head")
    return seconds


def projection_named(cls: type[P], name: str) -> P:
    """``cls`` under another name, hence another consumer group that never committed.

    A projection's group is ``<topic prefix>.projection.<name>``, and the
    topic prefix must stay the one of the pre-filled topic.
    """
    projection = type(f"Bench_{name}", (cls,), {"name": name})()
    assert isinstance(projection, cls)
    return projection


# --- Kafka ----------------------------------------------------------------------------------


def partition_ends(settings: Settings, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (low, high) watermark of ``topic``."""
    consumer = Consumer({**kafka_backend.base_config(settings), "group.id": "bench-counter"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in sorted(metadata.partitions)
        }
    finally:
        consumer.close()


def messages_on(settings: Settings, topics: Sequence[str]) -> int:
    """Messages stored in ``topics`` (high minus low watermarks; the relay's marks included)."""
    return sum(
        high - low for topic in topics for low, high in partition_ends(settings, topic).values()
    )


def create_topics(settings: Settings, topics: Sequence[str], partitions: int | None = None) -> None:
    """Create ``topics`` and wait until every partition has a leader."""
    admin = kafka_backend.admin(settings)
    count = partitions or settings.topic_partitions
    for topic in topics:
        kafka_backend.create_topic(admin, settings, topic, count)
    deadline = time.monotonic() + 30
    for topic in topics:
        while True:
            metadata = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
            found = metadata.partitions if metadata and not metadata.error else {}
            if len(found) == count and all(p.leader >= 0 for p in found.values()):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} has no leader after 30 s")
            time.sleep(0.1)


# --- clean-up ---------------------------------------------------------------------------------


def clean_up(
    settings: Settings,
    console: Console,
    *,
    indices: str | None = None,
    topics: str | None = None,
    groups: Sequence[str] = (),
    schema: bool = False,
) -> None:
    """Remove what a run created, best effort, and say what could not be removed.

    ``indices`` and ``topics`` are name prefixes; indices are deleted by
    name (Elasticsearch refuses wildcard deletes by default).
    """
    problems: list[str] = []
    if schema:
        try:
            with pg_backend.connect(settings) as conn:
                name = Identifier(settings.postgres_schema)
                conn.execute(SQL("DROP SCHEMA IF EXISTS {0} CASCADE").format(name))
        except Exception as exc:
            problems.append(f"schema: {exc}")
    if indices:
        es = es_backend.client(settings)
        try:
            found = es.indices.get(
                index=f"{indices}*", allow_no_indices=True, expand_wildcards="all"
            )
            for index in found:
                es.options(ignore_status=404).indices.delete(index=index)
        except Exception as exc:
            problems.append(f"indices: {exc}")
        finally:
            es.close()
    admin = kafka_backend.admin(settings)
    if topics:
        try:
            names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(topics)]
            for future in (
                admin.delete_topics(names, operation_timeout=30).values() if names else ()
            ):
                future.result(timeout=60)
        except Exception as exc:
            problems.append(f"topics: {exc}")
    if groups:
        for future in admin.delete_consumer_groups(sorted(set(groups))).values():
            with suppress(KafkaException):  # a group that never existed
                future.result(timeout=60)
    if problems:
        console.log(f"[yellow]clean-up incomplete: {'; '.join(problems)}")
