"""The benchmarks' fixtures on the real services: schemas, orders, topics, clean-up.

Each run fills its own schema with the example shop's orders, publishes
them with the product's own relay, reads them with the product's own
worker, and removes what it created. None of it is timed.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from decimal import Decimal
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, TopicPartition
from elasticsearch.helpers import scan
from psycopg.sql import SQL, Identifier
from rich.console import Console

from _kit.measure import RUN_TIMEOUT, BenchmarkError, Watched
from _kit.product import (
    METADATA_FIELD,
    IndexNames,
    PostgresEventStoreFactory,
    Runtime,
    Topology,
    es_backend,
    kafka_backend,
    pg_backend,
    read_status,
    store_head,
)
from cqrskit import OutboxRelay, Projection, ProjectionWorker, Settings
from examples.shop import Order, OrderLine, ShopApp
from projections.customers import CustomerOrders, CustomerOrdersProjection

P = TypeVar("P", bound=Projection[Any])
T = TypeVar("T")

APP_NAME = "shop"
#: What a plain eventsourcing application takes of the product's environment: the login.
LOGIN = ("POSTGRES_DBNAME", "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD")


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


def fill_store(
    settings: Settings, events: int, customers: int, chunk: int, console: Console
) -> tuple[float, int]:
    """Initialise the shop's schema, then append ``events`` new orders for ``customer-0``,
    ``customer-1``, ... in turn to a fresh store (one ``Order.Placed`` event each, ``chunk``
    per transaction); the seconds it took, and the store's head.

    Raises:
        BenchmarkError: the store does not hold exactly ``events`` events.
    """
    console.log(
        f"filling schema {settings.postgres_schema} with {events:,} Order.Placed events for "
        f"{customers:,} customers ({chunk} per transaction)"
    )
    Runtime(settings).init_schema(ShopApp)  # what 'cqrskit db init' runs; idempotent
    started, next_report = time.perf_counter(), events // 4
    with ShopApp(settings) as app:
        for start in range(0, events, chunk):
            stop = min(events, start + chunk)
            orders = [
                Order(customer_id=f"customer-{i % customers}", lines=[order_line(i)])
                for i in range(start, stop)
            ]
            app.save(*orders)
            if next_report <= stop < events:
                console.log(f"  filled {stop:,} / {events:,}")
                next_report += events // 4
    seconds = time.perf_counter() - started
    head = store_head(settings, APP_NAME)
    if head != events:
        raise BenchmarkError(f"the store holds {head} events, expected {events}")
    return seconds, head


def eventsourcing_env(settings: Settings, schema: str, **extra: str) -> dict[str, str]:
    """The environment of a plain eventsourcing application in ``schema``, on the library's
    own persistence: the login of the product's (``PostgresEventStoreFactory.environment``),
    the library's defaults for the rest (pool, timeouts), and ``extra``."""
    login = PostgresEventStoreFactory.environment(settings)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        **{k: v for k, v in login.items() if k in LOGIN},
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
        raise BenchmarkError("the relay did not record the head")
    return seconds


def projection_named(cls: type[P], name: str, **attributes: Any) -> P:
    """``cls`` under another name, hence another consumer group that never committed
    (and with ``attributes`` set on it: its ``freshness``, say).

    A projection's group is ``<topic prefix>.projection.<name>``, and the
    topic prefix must stay the one of the pre-filled topic.
    """
    projection = type(f"Bench_{name}", (cls,), {"name": name, **attributes})()
    assert isinstance(projection, cls)
    return projection


# --- a worker of its own, and what its read model holds ------------------------------------


class PublishedOrders:
    """A fresh store of orders published to Kafka once (untimed), for runs that read it into
    indices and consumer groups of their own (named in the run's ``groups``, for clean-up)."""

    def __init__(self, settings: Settings, tag: str, groups: list[str]) -> None:
        self.settings, self.tag, self.groups = settings, tag, groups
        self.es = es_backend.client(settings).options(request_timeout=120)
        self.topic = Topology.of(settings, APP_NAME).topic("Order")
        self.head = 0
        self.notes: dict[str, Any] = {}

    def publish(self, events: int, customers: int, chunk: int, console: Console) -> None:
        """Fill the store and publish it with the shop's relay; both times noted."""
        fill, self.head = fill_store(self.settings, events, customers, chunk, console)
        publish = publish_all(self.settings, self.head)
        self.notes = {"fill_seconds_not_timed": fill, "publish_seconds_not_timed": publish}

    def settings_for(self, tag: str, **update: Any) -> Settings:
        """The settings of one run: an index prefix of its own (and ``update``)."""
        return self.settings.model_copy(update={"index_prefix": f"{self.tag}-{tag}-", **update})

    def worker(
        self, settings: Settings, name: str, **attributes: Any
    ) -> tuple[ProjectionWorker, Watched]:
        """A customers worker under projection ``name``, hence a consumer group of its own
        that never committed (``attributes`` set on the projection); and its loop."""
        self.groups.append(Topology.of(settings, APP_NAME).projection_group(name))
        projection = projection_named(CustomerOrdersProjection, name, **attributes)
        return worker_loop(settings, projection)

    def check_caught_up(self, settings: Settings, projection: Projection[Any], docs: int) -> None:
        """Raise unless the projection's status shows no lag, the head applied and ``docs``
        documents (both its indices refreshed first: the status searches them)."""
        names = IndexNames.of(settings)
        self.es.indices.refresh(index=[names.alias(projection.name), names.checkpoints_index])
        status = Runtime(settings).projection_status(APP_NAME, projection)
        if (status.lag, status.position, status.documents) != (0, self.head, docs):
            raise BenchmarkError(f"{projection.name} after the run: {status}")

    def views(self, index: str) -> tuple[dict[str, CustomerOrders], float]:
        """Every live customer document of ``index`` (refreshed first), metadata removed;
        and the mean size of a stored ``_source`` in bytes (compact JSON)."""
        self.es.indices.refresh(index=index)
        views, sizes = {}, []
        for hit in scan(self.es, index=index, size=5000):
            source = dict(hit["_source"])
            sizes.append(len(json.dumps(source, separators=(",", ":"))))
            meta = source.pop(METADATA_FIELD, None)
            if not (meta and meta.get("deleted")):
                views[hit["_id"]] = CustomerOrders.model_validate(source)
        return views, statistics.fmean(sizes) if sizes else 0.0


def check_views(found: Mapping[str, T], expected: Mapping[str, T], where: str) -> None:
    """Raise unless ``found`` holds exactly the expected documents."""
    different = [k for k in expected.keys() & found.keys() if expected[k] != found[k]]
    if found.keys() != expected.keys() or different:
        example = f", e.g. {different[0]}: {found[different[0]]}" if different else ""
        raise BenchmarkError(
            f"{where}: {len(expected.keys() - found.keys())} documents missing, "
            f"{len(found.keys() - expected.keys())} extra, {len(different)} different{example}"
        )


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
