"""Projection throughput: cqrskit's worker against eventsourcing's runner and raw bulk writes.

One run pre-fills a fresh PostgreSQL schema with N ``Order.Placed`` events
(customers repeating), publishes them all to Kafka with an in-process
``OutboxRelay`` (not timed), then measures, in interleaved rounds, how fast
each side turns the N events into a customers read model (one document or
row per customer: orders placed and amount ordered):

- cqrskit: a ``ProjectionWorker`` for ``CustomerOrdersProjection`` run in a
  thread of this process, reading the pre-filled Kafka topic with a fresh
  consumer group into a fresh Elasticsearch index, from its start until it
  has applied and committed every event; with ``projection_batch_size``
  1000 (the default) and 5000;
- eventsourcing (baseline A): the library's own ``ProjectionRunner`` reading
  the shop's PostgreSQL notification log into a PostgreSQL view table
  (``PostgresTrackingRecorder`` subclass: one transaction per event that
  upserts the customer's row and records the tracking position), from its
  start until the view's tracking position reaches the head;
- raw bulk (baseline B): ``Elasticsearch.bulk`` of one index operation per
  event (the customer's document after that event, as a naive projector
  would write it; NDJSON encoded beforehand) into a fresh index, in
  requests of the worker's batch size, one after the other.

Compare the ratios of one run, not absolute figures across runs: this
machine is shared and noisy. Run from the repository root::

    .venv/bin/python bench/bench_projections.py [--quick] [--events N]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from unittest import mock

import orjson
from _common import fill_orders, fresh_schema, machine_info
from confluent_kafka import Consumer, TopicPartition
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection as LibraryProjection
from eventsourcing.projection import ProjectionRunner
from eventsourcing.utils import get_topic
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier
from rich.console import Console
from rich.table import Table

from cqrskit import Settings
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.envelope import Envelope
from cqrskit.eventstore import read_envelopes, store_head
from cqrskit.projections import (
    ProjectionWorker,
    consumer_group,
    index_names,
    projection_status,
)
from cqrskit.projections import _worker as worker_module
from cqrskit.relay import OutboxRelay, read_status, topic_for

# The example shop and the projections live outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.shop import Order, ShopApp
from projections.customers import CustomerOrders, CustomerOrdersProjection

RESULTS_DIR = Path(__file__).resolve().parent / "results"

APP_NAME = "shop"
#: How often the main thread looks at a side's progress.
POLL_SECONDS = 0.02
#: Give up on one timed run after this long.
RUN_TIMEOUT = 1800.0

Side = Literal["cqrskit", "eventsourcing", "raw"]


class BenchmarkError(RuntimeError):
    """A run did not produce exactly the expected read model."""


@dataclass(frozen=True)
class Variant:
    """One way of building the read model."""

    key: str
    label: str
    side: Side
    #: Events per batch (cqrskit: projection_batch_size; raw: operations per bulk request).
    batch_size: int | None = None


def variants_for(batch_sizes: Sequence[int]) -> list[Variant]:
    """The variants, in an order that interleaves cqrskit and the baselines."""
    variants = [
        Variant(f"cqrskit-b{b}", f"cqrskit worker, batch {b}", "cqrskit", b) for b in batch_sizes
    ]
    variants.append(Variant("eventsourcing", "eventsourcing ProjectionRunner", "eventsourcing"))
    variants += [
        Variant(f"raw-b{b}", f"raw ES bulk, {b} ops/request", "raw", b) for b in batch_sizes
    ]
    return variants


@dataclass
class Run:
    """One timed run of one variant."""

    seconds: float
    #: Seconds from the start to the first recorded progress, and how many events it covered.
    first_seconds: float | None
    first_events: int
    #: CPU of the whole benchmark process (every thread) during the run.
    process_cpu_seconds: float
    #: CPU of the worker's thread (cqrskit only).
    thread_cpu_seconds: float | None = None
    #: Index operations Elasticsearch counted on the read model's index (ES sides).
    index_operations: int | None = None

    def events_per_second(self, events: int) -> float:
        return events / self.seconds

    def events_per_second_after_first(self, events: int) -> float | None:
        """The rate once the pipeline runs: without the start and the first batch."""
        if self.first_seconds is None or self.seconds <= self.first_seconds:
            return None
        return (events - self.first_events) / (self.seconds - self.first_seconds)


@dataclass
class Measurement:
    """A variant's timed rounds."""

    variant: Variant
    events: int
    runs: list[Run] = field(default_factory=list)

    @property
    def events_per_second(self) -> list[float]:
        return [r.events_per_second(self.events) for r in self.runs]

    @property
    def median(self) -> float:
        """Median events per second over the rounds."""
        return statistics.median(self.events_per_second)

    @property
    def median_after_first(self) -> float | None:
        rates = [r.events_per_second_after_first(self.events) for r in self.runs]
        known = [r for r in rates if r is not None]
        return statistics.median(known) if known else None

    @property
    def spread_percent(self) -> float:
        """(max - min) / median, in percent: how noisy the rounds were."""
        rates = self.events_per_second
        return 100.0 * (max(rates) - min(rates)) / self.median


@dataclass(frozen=True)
class Ratio:
    """A variant's rate over a baseline's."""

    variant: str
    baseline: str
    ratio_of_medians: float
    round_ratios: list[float]


@dataclass(frozen=True)
class Config:
    """What one run measures."""

    events: int
    customers: int
    rounds: int
    batch_sizes: tuple[int, ...]
    warmup: int
    fill_chunk: int
    quick: bool
    split: bool
    profile: bool
    results: Path


# --- the event store and the topic ----------------------------------------------


def publish_all(settings: Settings, head: int) -> float:
    """Publish the whole store with an in-process relay, then stop it; the seconds."""
    relay = OutboxRelay(settings, APP_NAME, "bench")
    errors: list[BaseException] = []

    def target() -> None:
        try:
            relay.run()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=target, name="relay", daemon=True)
    started = time.perf_counter()
    thread.start()
    try:
        while (relay.position or 0) < head:
            if errors or not thread.is_alive():
                raise BenchmarkError(f"the relay stopped early: {errors!r}")
            if time.perf_counter() - started > RUN_TIMEOUT:
                raise BenchmarkError(f"the relay did not reach {head} in {RUN_TIMEOUT} s")
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
    finally:
        relay.stop()
        thread.join(timeout=120)
    if thread.is_alive() or errors:
        raise BenchmarkError(f"the relay did not stop cleanly: {errors!r}")
    if read_status(settings, APP_NAME, "bench").position < head:
        raise BenchmarkError("the relay did not record the head")
    return seconds


def messages_on(settings: Settings, topic: str) -> int:
    """Messages stored in ``topic`` (high watermarks minus low: the topic is fresh)."""
    consumer = Consumer({**kafka_backend.base_config(settings), "group.id": "bench-proj-counter"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        total = 0
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


# --- what the read model must hold ------------------------------------------------


@dataclass
class Expected:
    """The read model every side must end with, and the raw side's documents per event."""

    #: customer id -> the view as JSON (what cqrskit's documents hold, metadata aside).
    final: dict[str, dict[str, Any]]
    #: (customer id, the customer's document after the event), in commit order.
    per_event: list[tuple[str, bytes]]


def expected_documents(settings: Settings) -> Expected:
    """Apply the projection's own handler to every stored event, in commit order.

    This is a naive projector: the same handler code as the worker's, no
    Kafka, no guards, no batching; each event gives the customer's updated
    document, which is what the raw bulk side writes.
    """
    projection = CustomerOrdersProjection()
    docs: dict[str, CustomerOrders] = {}
    per_event: list[tuple[str, bytes]] = []
    for envelope in read_envelopes(settings, APP_NAME):
        customer = projection.doc_id(envelope)
        outcome = projection.placed(envelope, docs.get(customer))
        assert isinstance(outcome, CustomerOrders)
        docs[customer] = outcome
        per_event.append((customer, orjson.dumps(outcome.model_dump(mode="json"))))
    final = {k: v.model_dump(mode="json") for k, v in docs.items()}
    return Expected(final, per_event)


def bulk_bodies(expected: Expected, batch_size: int) -> list[bytes]:
    """NDJSON bodies of ``batch_size`` index operations each (the index is in the URL)."""
    bodies = []
    for start in range(0, len(expected.per_event), batch_size):
        lines = []
        for customer, document in expected.per_event[start : start + batch_size]:
            lines.append(orjson.dumps({"index": {"_id": customer}}))
            lines.append(document)
        bodies.append(b"\n".join(lines) + b"\n")
    return bodies


def normalised(doc: dict[str, Any]) -> dict[str, Any]:
    """A view as JSON, with the amounts as Decimals (ES and PostgreSQL differ in format)."""
    return {k: Decimal(str(v)).normalize() if k.startswith("amount") else v for k, v in doc.items()}


def check_documents(found: dict[str, dict[str, Any]], expected: Expected, where: str) -> None:
    """Raise unless ``found`` holds exactly the expected views."""
    want = {k: normalised(v) for k, v in expected.final.items()}
    got = {k: normalised(v) for k, v in found.items()}
    missing = want.keys() - got.keys()
    extra = got.keys() - want.keys()
    different = [k for k in want.keys() & got.keys() if want[k] != got[k]]
    if missing or extra or different:
        example = different[0] if different else None
        raise BenchmarkError(
            f"{where}: {len(missing)} documents missing, {len(extra)} extra, "
            f"{len(different)} different"
            + (f", e.g. {example}: {got[example]} != {want[example]}" if example else "")
        )


def es_documents(es: Elasticsearch, index: str) -> dict[str, dict[str, Any]]:
    """Every live document of ``index``, metadata removed."""
    es.indices.refresh(index=index)
    docs = {}
    for hit in scan(es, index=index, size=5000):
        source = dict(hit["_source"])
        meta = source.pop("cqrskit", None)
        if meta and meta.get("deleted"):
            continue
        docs[hit["_id"]] = CustomerOrders.model_validate(source).model_dump(mode="json")
    return docs


def index_operations(es: Elasticsearch, index: str) -> int:
    """Index operations the primaries of ``index`` (an index or alias) have done."""
    stats = es.indices.stats(index=index, metric="indexing")
    return int(stats["_all"]["primaries"]["indexing"]["index_total"])


# --- cqrskit: the projection worker -----------------------------------------------


def projection_named(name: str) -> CustomerOrdersProjection:
    """CustomerOrdersProjection under another name, hence another consumer group.

    The worker's consumer group is ``<topic prefix>.projection.<name>``, and
    the topic prefix must stay the one of the pre-filled topic; a subclass
    with its own ``name`` gets a group that has never committed an offset,
    so the worker starts from the earliest offset of every partition.
    """
    cls = type(f"Bench_{name}", (CustomerOrdersProjection,), {"name": name})
    projection = cls()
    assert isinstance(projection, CustomerOrdersProjection)
    return projection


def thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds used so far by ``thread`` (Linux: its pthread CPU clock)."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


@dataclass
class WorkerRun:
    """An in-process worker in a thread, watched until it has applied every event."""

    settings: Settings
    projection: CustomerOrdersProjection
    wrap_run: Callable[[Callable[[], None]], Callable[[], None]] | None = None
    errors: list[BaseException] = field(default_factory=list)
    worker: ProjectionWorker = field(init=False)

    def __post_init__(self) -> None:
        self.worker = ProjectionWorker(self.settings, APP_NAME, self.projection)

    def _target(self) -> None:
        run = self.worker.run if self.wrap_run is None else self.wrap_run(self.worker.run)
        try:
            run()
        except BaseException as exc:  # reported by the watcher
            self.errors.append(exc)

    def until(self, events: int, on_done: Callable[[], None] | None = None) -> Run:
        """Start the worker; time it until it has applied (and committed) ``events``."""
        worker = self.worker
        thread = threading.Thread(target=self._target, name="worker", daemon=True)
        cpu_started = time.process_time()
        started = time.perf_counter()
        thread.start()
        first: float | None = None
        first_events = 0
        try:
            while True:
                processed = worker.processed
                now = time.perf_counter()
                if processed and first is None:
                    first, first_events = now - started, processed
                if processed >= events:
                    seconds = now - started
                    process_cpu = time.process_time() - cpu_started
                    worker_cpu = thread_cpu(thread)
                    break
                if self.errors or not thread.is_alive():
                    raise BenchmarkError(f"the worker stopped early: {self.errors!r}")
                if now - started > RUN_TIMEOUT:
                    raise BenchmarkError(f"the worker did not apply {events} in {RUN_TIMEOUT} s")
                time.sleep(POLL_SECONDS)
            if on_done is not None:
                on_done()
        finally:
            worker.stop()
            thread.join(timeout=120)
        if thread.is_alive() or self.errors:
            raise BenchmarkError(f"the worker did not stop cleanly: {self.errors!r}")
        return Run(seconds, first, first_events, process_cpu, worker_cpu)


# --- eventsourcing: the library's projection runner --------------------------------


class PostgresCustomerOrdersView(PostgresTrackingRecorder):
    """The baseline's materialised view: one row per customer, plus the library's tracking.

    Like the library's documented ``PostgresEventCounters``: each event is one
    transaction that records the tracking position (unique, so an event is
    applied at most once) and updates the view.
    """

    def __init__(
        self, datastore: PostgresDatastore, *, tracking_table_name: str, **kwargs: Any
    ) -> None:
        super().__init__(datastore, tracking_table_name=tracking_table_name, **kwargs)
        self.view_table = Identifier(
            datastore.schema, tracking_table_name.removesuffix("_tracking") + "_view"
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "customer_id text PRIMARY KEY, "
                "orders_placed bigint NOT NULL DEFAULT 0, "
                "orders_cancelled bigint NOT NULL DEFAULT 0, "
                "orders_paid bigint NOT NULL DEFAULT 0, "
                "amount_ordered numeric NOT NULL DEFAULT 0, "
                "amount_paid numeric NOT NULL DEFAULT 0)"
            ).format(self.view_table)
        )
        self.placed_statement = SQL(
            "INSERT INTO {0} AS v (customer_id, orders_placed, amount_ordered) "
            "VALUES (%s, 1, %s) ON CONFLICT (customer_id) DO UPDATE SET "
            "orders_placed = v.orders_placed + 1, "
            "amount_ordered = v.amount_ordered + excluded.amount_ordered"
        ).format(self.view_table)

    def order_placed(self, customer_id: str, amount: Decimal, tracking: Tracking) -> None:
        """Count one order for the customer, and track the event, in one transaction."""
        with self.datastore.transaction(commit=True) as curs:
            self._insert_tracking(curs, tracking)
            curs.execute(self.placed_statement, (customer_id, amount), prepare=True)

    def rows(self) -> dict[str, dict[str, Any]]:
        """Every row, as the cqrskit view's JSON fields."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT customer_id, orders_placed, orders_cancelled, orders_paid, "
                    "amount_ordered, amount_paid FROM {0}"
                ).format(self.view_table)
            )
            return {row["customer_id"]: dict(row) for row in curs.fetchall()}


class LibraryCustomerOrders(LibraryProjection[PostgresCustomerOrdersView]):
    """The baseline's projection: Order.Placed -> the customer's row."""

    name = "es_customer_orders"
    topics = (get_topic(Order.Placed),)

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register(Order.Placed)
    def _(self, domain_event: Any, tracking: Tracking) -> None:
        amount = sum((line.unit_price * line.quantity for line in domain_event.lines), Decimal(0))
        self.view.order_placed(domain_event.customer_id, amount, tracking)


def library_env(settings: Settings) -> dict[str, str]:
    """The runner's environment: the library's own PostgreSQL persistence, same schema."""
    params = conninfo_to_dict(settings.postgres_dsn)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname", "")),
        "POSTGRES_HOST": str(params.get("host", "localhost")),
        "POSTGRES_PORT": str(params.get("port", 5432)),
        "POSTGRES_USER": str(params.get("user", "")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
        "POSTGRES_SCHEMA": settings.postgres_schema,
    }


def shop_for_runner(settings: Settings) -> type[ShopApp]:
    """ShopApp as the runner constructs applications: ``application_class(env)``."""

    class RunnerShop(ShopApp):
        name = APP_NAME

        def __init__(self, env: Any = None) -> None:
            super().__init__(settings)

    return RunnerShop


def run_library(settings: Settings, name: str, head: int) -> tuple[Run, dict[str, Any]]:
    """One timed ProjectionRunner run from nothing to ``head``; (run, the view's rows)."""
    projection_class = type(f"Bench_{name}", (LibraryCustomerOrders,), {"name": name})
    cpu_started = time.process_time()
    started = time.perf_counter()
    runner: ProjectionRunner[ShopApp, PostgresCustomerOrdersView] = ProjectionRunner(
        application_class=shop_for_runner(settings),
        projection_class=projection_class,
        view_class=PostgresCustomerOrdersView,
        env=library_env(settings),
    )
    view = runner.view
    first: float | None = None
    first_events = 0
    try:
        with runner:
            while True:
                tracked = view.max_tracking_id(APP_NAME)
                now = time.perf_counter()
                if tracked and first is None:
                    first, first_events = now - started, tracked
                if tracked is not None and tracked >= head:
                    seconds = now - started
                    process_cpu = time.process_time() - cpu_started
                    break
                if runner.is_interrupted.is_set():
                    runner.run_forever(timeout=0)  # raises the runner's error, if any
                    raise BenchmarkError("the projection runner stopped early")
                if now - started > RUN_TIMEOUT:
                    raise BenchmarkError(f"the runner did not reach {head} in {RUN_TIMEOUT} s")
                time.sleep(POLL_SECONDS)
        rows = view.rows()
    finally:
        view.datastore.close()
    return Run(seconds, first, first_events, process_cpu), rows


# --- raw bulk -----------------------------------------------------------------------


def run_raw(es: Elasticsearch, index: str, bodies: Sequence[bytes]) -> Run:
    """Bulk ``bodies`` into ``index`` one request after the other; timed."""
    es.indices.create(
        index=index,
        settings={"number_of_shards": 1, "number_of_replicas": 0},
        mappings=CustomerOrdersProjection.mapping(),
    )
    bulk = es.bulk
    first: float | None = None
    first_events = 0
    cpu_started = time.process_time()
    started = time.perf_counter()
    for body in bodies:
        response = bulk(index=index, operations=body)
        if response["errors"]:
            failed = next(i for i in response["items"] if next(iter(i.values())).get("error"))
            raise BenchmarkError(f"raw bulk into {index} failed: {failed}")
        if first is None:
            first, first_events = time.perf_counter() - started, len(response["items"])
    seconds = time.perf_counter() - started
    process_cpu = time.process_time() - cpu_started
    return Run(seconds, first, first_events, process_cpu)


# --- where the worker's time goes (an untimed, instrumented run) --------------------


class Split:
    """Exclusive wall time per wrapped step: a step's time excludes wrapped steps inside it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        #: When each step was first entered.
        self.first: dict[str, float] = {}
        self._stack: list[list[float]] = []  # per open step: [child seconds]
        self._names: list[str] = []

    def wrap(self, name: str | Callable[[], str], function: Callable[..., Any]) -> Any:
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            label = name if isinstance(name, str) else name()
            self._stack.append([0.0])
            self._names.append(label)
            started = clock()
            self.first.setdefault(label, started)
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = clock() - started
                (children,) = self._stack.pop()
                self._names.pop()
                self.seconds[label] += elapsed - children
                self.calls[label] += 1
                if self._stack:
                    self._stack[-1][0] += elapsed

        return timed

    def parent(self) -> str:
        """The innermost open step's name."""
        return self._names[-1] if self._names else ""


SPLIT_STEPS = [
    ("start: indices, consumer, subscribe", "start"),
    ("Kafka poll/consume (group join, fetch)", "consume"),
    ("decode envelopes (pydantic)", "decode"),
    ("batch loop: headers, checkpoints", "process"),
    ("ES mget (request)", "mget"),
    ("documents from _source (pydantic)", "load"),
    ("fold: handlers, guards", "apply"),
    ("document bodies (model_dump)", "write"),
    ("ES bulk of documents (request)", "bulk:write"),
    ("save checkpoints (ES bulk)", "checkpoints"),
    ("commit offsets (Kafka)", "commit"),
    ("other", "other"),
]


def measure_split(settings: Settings, name: str, events: int) -> dict[str, Any]:
    """One worker run with every step timed; the wrapping costs a little."""
    split = Split()
    snapshot: dict[str, Any] = {}
    watched = WorkerRun(settings, projection_named(name))
    worker = watched.worker
    read_model = worker.read_model
    es = read_model.es
    worker._process = split.wrap("process", worker._process)  # type: ignore[method-assign]
    worker.applier.apply = split.wrap("apply", worker.applier.apply)  # type: ignore[method-assign]
    read_model.load = split.wrap("load", read_model.load)  # type: ignore[method-assign]
    read_model.write = split.wrap("write", read_model.write)  # type: ignore[method-assign]
    read_model.save_checkpoints = split.wrap(  # type: ignore[method-assign]
        "checkpoints", read_model.save_checkpoints
    )
    worker._commit = split.wrap("commit", worker._commit)  # type: ignore[method-assign]
    es.mget = split.wrap("mget", es.mget)  # type: ignore[method-assign]
    es.bulk = split.wrap(lambda: f"bulk:{split.parent()}", es.bulk)  # type: ignore[method-assign]

    class TimedConsumer(Consumer):  # type: ignore[misc]
        poll = split.wrap("consume", Consumer.poll)
        consume = split.wrap("consume", Consumer.consume)

    def done() -> None:
        snapshot["seconds"] = dict(split.seconds)
        snapshot["calls"] = dict(split.calls)
        snapshot["first_consume"] = split.first.get("consume")

    started = time.perf_counter()
    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(worker_module, "Consumer", TimedConsumer))
        patches.enter_context(
            mock.patch.object(
                worker_module.Envelope, "decode", split.wrap("decode", Envelope.decode)
            )
        )
        run = watched.until(events, on_done=done)
    seconds: dict[str, float] = snapshot["seconds"]
    steps = {key: seconds.get(key, 0.0) for _label, key in SPLIT_STEPS}
    steps["checkpoints"] += seconds.get("bulk:checkpoints", 0.0)
    steps["start"] = (snapshot["first_consume"] or started) - started
    steps["other"] = run.seconds - sum(v for k, v in steps.items() if k != "other")
    return {
        "seconds": run.seconds,
        "events_per_second": events / run.seconds,
        "worker_thread_cpu_seconds": run.thread_cpu_seconds,
        "process_cpu_seconds": run.process_cpu_seconds,
        "steps": [
            {"step": label, "key": key, "seconds": steps[key], "share": steps[key] / run.seconds}
            for label, key in SPLIT_STEPS
        ],
        "calls": snapshot["calls"],
        "note": "exclusive wall time per step of the worker's loop (a step's time excludes "
        "the wrapped steps inside it); the wrappers cost about a microsecond per call",
    }


def measure_profile(settings: Settings, name: str, events: int, path: Path) -> list[dict[str, Any]]:
    """One worker run under cProfile (worker thread only); the top functions by own time."""
    profiler = cProfile.Profile()

    def profiled(run: Callable[[], None]) -> Callable[[], None]:
        return lambda: profiler.runcall(run)

    WorkerRun(settings, projection_named(name), wrap_run=profiled).until(events)
    profiler.dump_stats(path)
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, func), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(filename).name}:{line}({func})",
                "calls": calls,
                "own_seconds": own,
                "cumulative_seconds": cumulative,
            }
        )
    by_cumulative = sorted(rows, key=lambda r: r["cumulative_seconds"], reverse=True)
    rows.sort(key=lambda r: r["own_seconds"], reverse=True)
    return rows[:25] + [{**r, "by": "cumulative"} for r in by_cumulative[:25]]


# --- the run ------------------------------------------------------------------------


@dataclass
class Outcome:
    """Everything measured in one run of the script."""

    measurements: list[Measurement]
    head: int
    customers: int
    fill_seconds: float
    publish_seconds: float
    topic: str
    split: dict[str, Any] | None = None
    profile: list[dict[str, Any]] | None = None
    profile_path: str | None = None


class Bench:
    """One run's store, topic, expected documents, and what it creates (to clean up)."""

    def __init__(self, settings: Settings, config: Config, stamp: str, console: Console):
        self.settings = settings
        self.config = config
        self.stamp = stamp
        self.console = console
        self.base = f"bench-proj-{stamp.lower()}"
        self.es = es_backend.client(settings).options(request_timeout=120)
        self.head = 0
        self.topic = topic_for(settings, APP_NAME, "Order")
        self.expected = Expected({}, [])
        self.bodies: dict[int, list[bytes]] = {}
        self.groups: list[str] = []
        self.fill_seconds = 0.0
        self.publish_seconds = 0.0

    # -- setup -----------------------------------------------------------------------

    def setup(self) -> None:
        """Fill the store, publish it all, compute the expected documents (none timed)."""
        config, console, settings = self.config, self.console, self.settings
        console.log(
            f"filling schema {settings.postgres_schema} with {config.events:,} Order.Placed "
            f"events for {config.customers:,} customers ({config.fill_chunk} per transaction)"
        )
        self.fill_seconds = fill_orders(settings, config, console)
        self.head = store_head(settings, APP_NAME)
        if self.head != config.events:
            raise BenchmarkError(f"the store holds {self.head} events, expected {config.events}")
        console.log(f"filled in {self.fill_seconds:.1f} s; publishing to {self.topic}")
        self.publish_seconds = publish_all(settings, self.head)
        # The relay also writes a few watermark messages per partition.
        on_topic = messages_on(settings, self.topic)
        if on_topic < self.head:
            raise BenchmarkError(f"{on_topic} messages on {self.topic}, expected {self.head}")
        console.log(
            f"published in {self.publish_seconds:.1f} s ({on_topic:,} messages on "
            f"{settings.topic_partitions} partitions); computing the expected documents"
        )
        self.expected = expected_documents(settings)
        if len(self.expected.per_event) != self.head:
            raise BenchmarkError("the store and the expected documents disagree")
        for b in config.batch_sizes:
            self.bodies[b] = bulk_bodies(self.expected, b)
        raw_bytes = sum(len(body) for body in self.bodies[config.batch_sizes[0]])
        # Long-lived objects: keep them out of the cyclic collector's way during the runs.
        gc.collect()
        gc.freeze()
        console.log(
            f"{len(self.expected.final):,} customers; raw bulk bodies {raw_bytes / 1e6:.1f} MB "
            f"({raw_bytes / self.head:.0f} bytes per event)"
        )

    def settings_for(self, tag: str, batch_size: int | None = None) -> Settings:
        """Settings with a fresh index prefix (and the batch size) for one run."""
        update: dict[str, Any] = {"index_prefix": f"{self.base}-{tag}-"}
        if batch_size is not None:
            update["projection_batch_size"] = batch_size
        return self.settings.model_copy(update=update)

    # -- one run of each side -------------------------------------------------------------

    def cqrskit(self, tag: str, batch_size: int, events: int | None = None) -> Run:
        """One worker run with a fresh consumer group and fresh indices; checked."""
        run_settings = self.settings_for(tag, batch_size)
        projection = projection_named(f"customer_orders_{tag}")
        self.groups.append(consumer_group(run_settings, APP_NAME, projection.name))
        run = WorkerRun(run_settings, projection).until(events or self.head)
        if events is None:
            self.check_cqrskit(run_settings, projection, run)
        return run

    def check_cqrskit(
        self, run_settings: Settings, projection: CustomerOrdersProjection, run: Run
    ) -> None:
        alias, checkpoints = index_names(run_settings, projection.name)
        # The status reads checkpoints and counts documents by search: refresh first.
        self.es.indices.refresh(index=[alias, checkpoints])
        status = projection_status(run_settings, APP_NAME, projection)
        if (
            status.lag != 0
            or status.position != self.head
            or status.documents != len(self.expected.final)
        ):
            raise BenchmarkError(
                f"{projection.name}: lag {status.lag}, position {status.position}, "
                f"{status.documents} documents after the run"
            )
        check_documents(es_documents(self.es, alias), self.expected, projection.name)
        run.index_operations = index_operations(self.es, alias)

    def library(self, tag: str) -> Run:
        """One ProjectionRunner run into fresh tables; checked."""
        run, rows = run_library(self.settings, f"es_customer_orders_{tag}", self.head)
        found = {
            k: CustomerOrders.model_validate(v).model_dump(mode="json") for k, v in rows.items()
        }
        check_documents(found, self.expected, f"eventsourcing view {tag}")
        return run

    def raw(self, tag: str, batch_size: int, events: int | None = None) -> Run:
        """One raw bulk run into a fresh index; checked."""
        index = f"{self.base}-raw-{tag}"
        bodies = self.bodies[batch_size]
        if events is not None:
            bodies = bodies[: max(1, events // batch_size)]
        run = run_raw(self.es, index, bodies)
        if events is None:
            check_documents(es_documents(self.es, index), self.expected, index)
            run.index_operations = index_operations(self.es, index)
        return run

    def warm_up(self) -> None:
        """Each side once on the first events, untimed (imports, connections, JIT of ES)."""
        warm = min(self.config.warmup, self.head)
        b = self.config.batch_sizes[0]
        self.cqrskit("warmup", b, warm)
        library_run = self.library_partial("warmup", warm)
        self.raw("warmup", b, warm)
        self.console.log(
            f"warm-up done (about {warm:,} events each side, not timed; "
            f"eventsourcing at {warm / library_run:,.0f} events/s)"
        )

    def library_partial(self, tag: str, events: int) -> float:
        """Run the library's runner until it has tracked ``events``; the seconds."""
        name = f"es_customer_orders_{tag}"
        projection_class = type(f"Bench_{name}", (LibraryCustomerOrders,), {"name": name})
        started = time.perf_counter()
        runner: ProjectionRunner[ShopApp, PostgresCustomerOrdersView] = ProjectionRunner(
            application_class=shop_for_runner(self.settings),
            projection_class=projection_class,
            view_class=PostgresCustomerOrdersView,
            env=library_env(self.settings),
        )
        try:
            with runner:
                runner.wait(events, timeout=RUN_TIMEOUT)
                seconds = time.perf_counter() - started
        finally:
            runner.view.datastore.close()
        return seconds

    # -- the rounds -----------------------------------------------------------------------

    def run_rounds(self, variants: Sequence[Variant]) -> list[Measurement]:
        """The timed rounds, alternating the order of the variants."""
        config, head = self.config, self.head
        measurements = {v.key: Measurement(v, head) for v in variants}
        for round_no in range(1, config.rounds + 1):
            order = list(variants) if round_no % 2 else list(reversed(variants))
            for v in order:
                tag = f"r{round_no}-{v.key}".replace("-", "_")
                if v.side == "cqrskit":
                    assert v.batch_size is not None
                    run = self.cqrskit(tag, v.batch_size)
                elif v.side == "eventsourcing":
                    run = self.library(tag)
                else:
                    assert v.batch_size is not None
                    run = self.raw(tag, v.batch_size)
                measurements[v.key].runs.append(run)
                ops = f", {run.index_operations:,} index ops" if run.index_operations else ""
                self.console.log(
                    f"round {round_no}/{config.rounds}  {v.label:<34} "
                    f"{run.events_per_second(head):>8,.0f} events/s  ({run.seconds:.2f} s, "
                    f"process CPU {100 * run.process_cpu_seconds / run.seconds:.0f}%{ops})"
                )
        return [measurements[v.key] for v in variants]

    def extras(self, outcome: Outcome) -> None:
        """The untimed instrumented worker run and, if asked, the profiled one."""
        b = self.config.batch_sizes[0]
        if self.config.split:
            tag = "split"
            self.groups.append(consumer_group(self.settings, APP_NAME, f"customer_orders_{tag}"))
            outcome.split = measure_split(
                self.settings_for(tag, b), f"customer_orders_{tag}", self.head
            )
            outcome.split["batch_size"] = b
            self.console.log(
                f"instrumented worker run: {outcome.split['events_per_second']:,.0f} events/s"
            )
        if self.config.profile:
            tag = "profile"
            self.groups.append(consumer_group(self.settings, APP_NAME, f"customer_orders_{tag}"))
            self.config.results.mkdir(parents=True, exist_ok=True)
            path = self.config.results / f"projections-{self.stamp}.prof"
            outcome.profile = measure_profile(
                self.settings_for(tag, b), f"customer_orders_{tag}", self.head, path
            )
            outcome.profile_path = str(path)
            self.console.log(f"profiled worker run saved to {path}")

    # -- cleanup --------------------------------------------------------------------------

    def clean_up(self) -> None:
        """Delete the indices, topics and consumer groups this run created."""
        problems: list[str] = []
        try:
            found = self.es.indices.get(index=f"{self.base}-*", expand_wildcards="all")
            for index in found:
                self.es.options(ignore_status=404).indices.delete(index=index)
        except Exception as exc:
            problems.append(f"indices: {exc}")
        admin = kafka_backend.admin(self.settings)
        prefix = self.settings.topic_prefix or ""
        try:
            topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
            if topics:
                for future in admin.delete_topics(topics, operation_timeout=30).values():
                    future.result(timeout=60)
        except Exception as exc:
            problems.append(f"topics: {exc}")
        if self.groups:
            try:
                for future in admin.delete_consumer_groups(
                    sorted(set(self.groups)), request_timeout=30
                ).values():
                    try:
                        future.result(timeout=60)
                    except Exception as exc:  # a group that never existed
                        if "GROUP_ID_NOT_FOUND" not in str(exc):
                            raise
            except Exception as exc:
                problems.append(f"consumer groups: {exc}")
        if problems:
            self.console.log(f"[yellow]clean-up incomplete: {'; '.join(problems)}")


def measure(settings: Settings, config: Config, stamp: str, console: Console) -> Outcome:
    """Fill and publish, then run the interleaved rounds; clean up whatever happens."""
    bench = Bench(settings, config, stamp, console)
    variants = variants_for(config.batch_sizes)
    with ExitStack() as stack:
        stack.enter_context(fresh_schema(settings))
        stack.callback(bench.clean_up)
        bench.setup()
        if config.warmup:
            bench.warm_up()
        outcome = Outcome(
            bench.run_rounds(variants),
            bench.head,
            len(bench.expected.final),
            bench.fill_seconds,
            bench.publish_seconds,
            bench.topic,
        )
        bench.bodies = {}
        gc.unfreeze()
        gc.collect()
        bench.extras(outcome)
    return outcome


def ratios_of(measurements: Sequence[Measurement]) -> list[Ratio]:
    """Each cqrskit variant over eventsourcing, and over the raw bulk of its batch size."""
    by_key = {m.variant.key: m for m in measurements}
    ratios = []
    for m in measurements:
        if m.variant.side != "cqrskit":
            continue
        for base_key in ("eventsourcing", f"raw-b{m.variant.batch_size}"):
            base = by_key[base_key]
            ratios.append(
                Ratio(
                    variant=m.variant.key,
                    baseline=base_key,
                    ratio_of_medians=m.median / base.median,
                    round_ratios=[
                        mine / theirs
                        for mine, theirs in zip(
                            m.events_per_second, base.events_per_second, strict=True
                        )
                    ],
                )
            )
    return ratios


# --- output ---------------------------------------------------------------------------


def print_tables(
    console: Console, outcome: Outcome, ratios: Sequence[Ratio], config: Config
) -> None:
    """The rounds table, the ratios, then the worker's time split and profile if measured."""
    table = Table(
        title=(
            f"Projecting {outcome.head:,} Order.Placed events into {outcome.customers:,} customer "
            f"documents: {config.rounds} interleaved rounds, fresh read model each"
        )
    )
    table.add_column("variant")
    table.add_column("median events/s", justify="right")
    table.add_column("min - max", justify="right")
    table.add_column("spread", justify="right")
    table.add_column("median s", justify="right")
    table.add_column("first batch", justify="right")
    table.add_column("events/s after it", justify="right")
    table.add_column("process CPU", justify="right")
    table.add_column("ES index ops", justify="right")
    for m in outcome.measurements:
        firsts = [r.first_seconds for r in m.runs if r.first_seconds is not None]
        ops = [r.index_operations for r in m.runs if r.index_operations]
        table.add_row(
            m.variant.label,
            f"{m.median:,.0f}",
            f"{min(m.events_per_second):,.0f} - {max(m.events_per_second):,.0f}",
            f"{m.spread_percent:.0f}%",
            f"{statistics.median(r.seconds for r in m.runs):.2f}",
            f"{1000 * statistics.median(firsts):.0f} ms" if firsts else "-",
            f"{m.median_after_first:,.0f}" if m.median_after_first else "-",
            f"{statistics.median(100 * r.process_cpu_seconds / r.seconds for r in m.runs):.0f}%",
            f"{statistics.median(ops):,.0f}" if ops else "-",
        )
    console.print(table)
    ratio_table = Table(title="Ratios (events/s over the baseline's, same run)")
    ratio_table.add_column("variant")
    ratio_table.add_column("baseline")
    ratio_table.add_column("ratio of medians", justify="right")
    ratio_table.add_column("per-round ratios", justify="right")
    for r in ratios:
        ratio_table.add_row(
            r.variant,
            r.baseline,
            f"{r.ratio_of_medians:.2f}x",
            ", ".join(f"{x:.2f}" for x in r.round_ratios),
        )
    console.print(ratio_table)
    console.print(
        "first batch: from the start to the first progress recorded (cqrskit: first batch "
        "committed; eventsourcing: first tracking row; raw: first bulk response); events/s "
        "after it: the rest over the rest of the time. process CPU: every thread of this "
        "process (100% = one core); Elasticsearch, Kafka and PostgreSQL run on the same CPUs. "
        "ES index ops: index operations Elasticsearch counted on the read model's index."
    )
    if outcome.split:
        split = outcome.split
        cpu = split["worker_thread_cpu_seconds"] / split["seconds"]
        table = Table(
            title=(
                f"Where the worker's time goes (one instrumented run, batch "
                f"{split['batch_size']}, {split['events_per_second']:,.0f} events/s, worker "
                f"thread CPU {100 * cpu:.0f}%)"
            )
        )
        table.add_column("step")
        table.add_column("seconds", justify="right")
        table.add_column("share", justify="right")
        table.add_column("us / event", justify="right")
        for step in split["steps"]:
            table.add_row(
                step["step"],
                f"{step['seconds']:.2f}",
                f"{100 * step['share']:.0f}%",
                f"{1e6 * step['seconds'] / outcome.head:.1f}",
            )
        console.print(table)
    if outcome.profile:
        table = Table(title="cProfile of the worker thread: top functions by own time")
        table.add_column("function")
        table.add_column("calls", justify="right")
        table.add_column("own s", justify="right")
        table.add_column("cumulative s", justify="right")
        for row in [r for r in outcome.profile if "by" not in r][:20]:
            table.add_row(
                row["function"],
                f"{row['calls']:,}",
                f"{row['own_seconds']:.2f}",
                f"{row['cumulative_seconds']:.2f}",
            )
        console.print(table)


def save_json(
    path: Path,
    *,
    config: Config,
    settings: Settings,
    machine: dict[str, Any],
    outcome: Outcome,
    ratios: Sequence[Ratio],
    started: datetime,
) -> None:
    """Write everything a later reader needs to judge the figures."""
    document = {
        "benchmark": "projections",
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "config": {
            **asdict(config),
            "results": str(config.results),
            "events": outcome.head,
            "customers": outcome.customers,
            "event": "Order.Placed (one new Order per event, one line), customers repeating",
            "topic": outcome.topic,
            "topic_partitions": settings.topic_partitions,
            "fill_seconds_not_timed": outcome.fill_seconds,
            "publish_seconds_not_timed": outcome.publish_seconds,
            "poll_seconds": POLL_SECONDS,
            "cqrskit_timed": "ProjectionWorker.run in a thread, from the thread's start until "
            "worker.processed (counted after each batch's offsets are committed) == N; fresh "
            "index prefix and a projection subclass with its own name (hence its own consumer "
            "group, no committed offsets) per run; includes creating the indices and joining "
            "the group",
            "eventsourcing_timed": "from constructing eventsourcing.projection.ProjectionRunner "
            "(creates the view and tracking tables, the application, the subscription) until "
            "the view's max_tracking_id == head; one transaction per event (tracking insert + "
            "upsert of the customer's row), eventsourcing.postgres persistence, same schema",
            "raw_timed": "from the first Elasticsearch bulk request to the last response, one "
            "request at a time; one index operation per event (the customer's document after "
            "that event, view fields only, NDJSON encoded beforehand) into a fresh index "
            "created beforehand with the projection's mapping",
            "clock": "time.perf_counter",
        },
        "machine": {**machine, "load_average_at_end": list(os.getloadavg())},
        "variants": [
            {
                **asdict(m.variant),
                "rounds": [
                    {
                        "round": n,
                        **asdict(r),
                        "events_per_second": r.events_per_second(m.events),
                        "events_per_second_after_first": r.events_per_second_after_first(m.events),
                    }
                    for n, r in enumerate(m.runs, start=1)
                ],
                "median_events_per_second": m.median,
                "min_events_per_second": min(m.events_per_second),
                "max_events_per_second": max(m.events_per_second),
                "spread_percent": m.spread_percent,
                "median_events_per_second_after_first": m.median_after_first,
            }
            for m in outcome.measurements
        ],
        "ratios": [asdict(r) for r in ratios],
        "worker_time_split": outcome.split,
        "worker_profile_top": outcome.profile,
        "worker_profile_file": outcome.profile_path,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


COLOURS = {"cqrskit": "#1f77b4", "eventsourcing": "#ff7f0e", "raw": "#9e9e9e"}
SPLIT_COLOURS = [
    "#bdbdbd",
    "#8c564b",
    "#1f77b4",
    "#aec7e8",
    "#ff7f0e",
    "#ffbb78",
    "#2ca02c",
    "#98df8a",
    "#d62728",
    "#9467bd",
    "#e377c2",
    "#7f7f7f",
]


def save_chart(
    path: Path,
    *,
    outcome: Outcome,
    ratios: Sequence[Ratio],
    config: Config,
    machine: dict[str, Any],
    stamp: str,
) -> None:
    """Bars of median events/s (whiskers: min and max), and the worker's time split."""
    figure = Figure(figsize=(11, 9 if outcome.split else 5.8), dpi=110)
    FigureCanvasAgg(figure)
    if outcome.split:
        grid = figure.add_gridspec(2, 1, height_ratios=[3, 1.4])
        axes = figure.add_subplot(grid[0])
        split_axes = figure.add_subplot(grid[1])
    else:
        axes = figure.add_subplot()
    ms = outcome.measurements
    medians = [m.median for m in ms]
    errors = [
        [m.median - min(m.events_per_second) for m in ms],
        [max(m.events_per_second) - m.median for m in ms],
    ]
    bars = axes.bar(
        range(len(ms)),
        medians,
        0.6,
        yerr=errors,
        capsize=5,
        color=[COLOURS[m.variant.side] for m in ms],
    )
    for bar, m in zip(bars, ms, strict=True):
        mine = [r for r in ratios if r.variant == m.variant.key]
        text = f"{m.median:,.0f}"
        for r in mine:
            short = "eventsourcing" if r.baseline == "eventsourcing" else "raw"
            text += f"\n{r.ratio_of_medians:.2f}x {short}"
        if not mine:
            text += "\nbaseline"
        axes.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, max(m.events_per_second)),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    axes.set_xticks(range(len(ms)), [m.variant.label.replace(", ", ",\n") for m in ms], fontsize=8)
    axes.set_ylabel("events per second (median of rounds)")
    axes.set_ylim(top=axes.get_ylim()[1] * 1.25)
    axes.set_title(
        f"Read model from {outcome.head:,} events ({outcome.customers:,} customers): cqrskit "
        f"worker (Kafka -> ES) vs eventsourcing runner (PG -> PG) vs raw ES bulk\n"
        f"{config.rounds} interleaved rounds, PostgreSQL "
        f"{machine['postgres']['server_version']}, Kafka {machine['kafka']['version']}, "
        f"Elasticsearch {machine['elasticsearch']['version']}, {machine['nproc']} CPUs, "
        f"run {stamp}\nbar: median; whiskers: min and max; label: median and ratios",
        fontsize=9,
    )
    if outcome.split:
        left = 0.0
        for step, colour in zip(outcome.split["steps"], SPLIT_COLOURS, strict=True):
            width = max(0.0, step["seconds"])
            split_axes.barh(0, width, left=left, color=colour, label=step["step"])
            if step["share"] >= 0.05:
                split_axes.text(
                    left + width / 2,
                    0,
                    f"{100 * step['share']:.0f}%",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white",
                )
            left += width
        split_axes.set_yticks([])
        split_axes.set_xlabel("seconds (one instrumented worker run)")
        split_axes.set_title(
            f"Where the worker's wall time goes (batch {outcome.split['batch_size']}, "
            f"{outcome.split['events_per_second']:,.0f} events/s with the timers on)",
            fontsize=9,
        )
        split_axes.legend(
            loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, fontsize=7, frameon=False
        )
    figure.tight_layout()
    figure.savefig(path)


# --- entry point ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Command-line options to a Config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="30000 events instead of 200000")
    parser.add_argument("--events", type=int, help="Order.Placed events (each run applies all)")
    parser.add_argument("--customers", type=int, default=1000, help="distinct customers")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant")
    parser.add_argument(
        "--batch-sizes",
        default="1000,5000",
        help="comma-separated projection_batch_size values (and raw bulk sizes) to measure",
    )
    parser.add_argument(
        "--warmup", type=int, default=5000, help="events each side applies untimed first"
    )
    parser.add_argument(
        "--fill-chunk", type=int, default=2000, help="new orders saved per transaction"
    )
    parser.add_argument("--no-split", action="store_true", help="skip the instrumented worker run")
    parser.add_argument(
        "--profile", action="store_true", help="one more worker run under cProfile (saves .prof)"
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR, help="where to save the JSON and the chart"
    )
    args = parser.parse_args(argv)
    events = args.events or (30_000 if args.quick else 200_000)
    try:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(",") if b.strip())
    except ValueError:
        parser.error("--batch-sizes must be comma-separated integers")
    for name, value in (
        ("events", events),
        ("customers", args.customers),
        ("rounds", args.rounds),
        ("fill-chunk", args.fill_chunk),
        ("batch-sizes", min(batch_sizes, default=0)),
    ):
        if value < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return Config(
        events=events,
        customers=args.customers,
        rounds=args.rounds,
        batch_sizes=batch_sizes,
        warmup=args.warmup,
        fill_chunk=args.fill_chunk,
        quick=args.quick,
        split=not args.no_split,
        profile=args.profile,
        results=args.results,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and save the JSON and the chart."""
    config = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # rich assumes 80 columns when piped; the table needs more
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    base = f"bench-proj-{stamp.lower()}"
    settings = Settings.load().model_copy(
        update={"postgres_schema": f"bench_proj_{stamp.lower()}", "topic_prefix": base}
    )
    machine = machine_info(settings, services=("postgres", "kafka", "elasticsearch"))
    console.log(
        f"PostgreSQL {machine['postgres']['server_version']}, Kafka "
        f"{machine['kafka']['version']}, Elasticsearch {machine['elasticsearch']['version']}, "
        f"{machine['nproc']} CPUs, Python {machine['python']}; {config.events:,} events x "
        f"{config.rounds} rounds per variant; batch sizes {list(config.batch_sizes)}, "
        f"{settings.topic_partitions} partitions"
    )
    outcome = measure(settings, config, stamp, console)
    ratios = ratios_of(outcome.measurements)
    print_tables(console, outcome, ratios, config)
    config.results.mkdir(parents=True, exist_ok=True)
    json_path = config.results / f"projections-{stamp}.json"
    png_path = config.results / f"projections-{stamp}.png"
    save_json(
        json_path,
        config=config,
        settings=settings,
        machine=machine,
        outcome=outcome,
        ratios=ratios,
        started=started,
    )
    save_chart(
        png_path, outcome=outcome, ratios=ratios, config=config, machine=machine, stamp=stamp
    )
    console.print(f"saved {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
