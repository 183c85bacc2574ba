"""Projection throughput: cqrskit's worker against eventsourcing's runner and raw bulk writes.

N ``Order.Placed`` events (customers repeating), published to Kafka untimed,
turned into a customers read model by a ``ProjectionWorker`` (batches of 1000
and 5000), by eventsourcing's ``ProjectionRunner`` into a PostgreSQL view, and
by raw ``Elasticsearch.bulk`` requests, in interleaved rounds. What each side
times: ``bench/README.md``, "Read models". Run from the repository root::

    .venv/bin/python bench/bench_projections.py [--quick] [--events N]
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
from _kit import cli
from _kit.cli import Config
from _kit.machine import machine_info
from _kit.measure import (
    Measurement,
    Ratio,
    StepTimer,
    Timed,
    interleaved,
    profiled,
    ratios,
    split,
)
from _kit.product import (
    METADATA_FIELD,
    IndexNames,
    Runtime,
    Topology,
    consumer_module,
    es_backend,
    read_envelopes,
)
from _kit.report import (
    profile_table,
    rate_cells,
    rounds_chart,
    steps_table,
    table,
    variant_rows,
)
from _kit.stack import (
    APP_NAME,
    clean_up,
    eventsourcing_env,
    fill_store,
    fresh_schemas,
    messages_on,
    projection_named,
    publish_all,
    worker_loop,
)
from confluent_kafka import Consumer
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection as LibraryProjection
from eventsourcing.projection import ProjectionRunner
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from cqrskit import Envelope, Settings
from examples.shop import Order, ShopApp
from projections.customers import CustomerOrders, CustomerOrdersProjection

#: Give up on one timed run after this long.
RUN_TIMEOUT = 1800.0
COLOURS = {"cqrskit": "#1f77b4", "eventsourcing": "#ff7f0e", "raw": "#9e9e9e"}
#: The steps of the worker's loop the instrumented run times (exclusive wall time).
SPLIT_STEPS = [
    ("start: indices, consumer, subscribe", "start"),
    ("Kafka poll/consume (group join, fetch)", "consume"),
    ("decode envelopes (pydantic)", "decode"),
    ("ES mget (request)", "mget"),
    ("documents from _source (pydantic)", "load"),
    ("fold: handlers, guards", "apply"),
    ("document bodies (model_dump)", "write"),
    ("ES bulk of documents (request)", "bulk:write"),
    ("save checkpoints (ES bulk)", "checkpoints"),
    ("commit offsets (Kafka)", "commit"),
    ("other: the batch loop (headers, positions)", "other"),
]


class BenchmarkError(RuntimeError):
    """A run did not produce exactly the expected read model."""


@dataclass(frozen=True)
class Variant:
    """One way of building the read model."""

    key: str
    label: str
    side: str
    #: Events per batch (cqrskit: projection_batch_size; raw: operations per bulk request).
    batch_size: int | None = None


def variants_for(batch_sizes: Sequence[int]) -> list[Variant]:
    """The variants, in an order that interleaves cqrskit and the baselines."""
    return [
        *(
            Variant(f"cqrskit-b{b}", f"cqrskit worker, batch {b}", "cqrskit", b)
            for b in batch_sizes
        ),
        Variant("eventsourcing", "eventsourcing ProjectionRunner", "eventsourcing"),
        *(Variant(f"raw-b{b}", f"raw ES bulk, {b} ops/request", "raw", b) for b in batch_sizes),
    ]


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
    return Expected({k: v.model_dump(mode="json") for k, v in docs.items()}, per_event)


def bulk_bodies(expected: Expected, batch_size: int) -> list[bytes]:
    """NDJSON bodies of ``batch_size`` index operations each (the index is in the URL)."""
    bodies = []
    for start in range(0, len(expected.per_event), batch_size):
        lines = []
        for customer, document in expected.per_event[start : start + batch_size]:
            lines += [orjson.dumps({"index": {"_id": customer}}), document]
        bodies.append(b"\n".join(lines) + b"\n")
    return bodies


def check_documents(found: dict[str, dict[str, Any]], expected: Expected, where: str) -> None:
    """Raise unless ``found`` holds exactly the expected views (amounts compared as Decimals)."""

    def normalised(doc: dict[str, Any]) -> dict[str, Any]:
        return {
            k: Decimal(str(v)).normalize() if k.startswith("amount") else v for k, v in doc.items()
        }

    want = {k: normalised(v) for k, v in expected.final.items()}
    got = {k: normalised(v) for k, v in found.items()}
    different = [k for k in want.keys() & got.keys() if want[k] != got[k]]
    if want.keys() != got.keys() or different:
        example = f", e.g. {different[0]}: {got[different[0]]}" if different else ""
        raise BenchmarkError(
            f"{where}: {len(want.keys() - got.keys())} documents missing, "
            f"{len(got.keys() - want.keys())} extra, {len(different)} different{example}"
        )


def es_documents(es: Elasticsearch, index: str) -> dict[str, dict[str, Any]]:
    """Every live document of ``index``, metadata removed."""
    es.indices.refresh(index=index)
    docs = {}
    for hit in scan(es, index=index, size=5000):
        source = dict(hit["_source"])
        meta = source.pop(METADATA_FIELD, None)
        if not (meta and meta.get("deleted")):
            docs[hit["_id"]] = CustomerOrders.model_validate(source).model_dump(mode="json")
    return docs


def index_operations(es: Elasticsearch, index: str) -> int:
    """Index operations the primaries of ``index`` (an index or alias) have done."""
    stats = es.indices.stats(index=index, metric="indexing")
    return int(stats["_all"]["primaries"]["indexing"]["index_total"])


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


def run_library(settings: Settings, name: str, events: int) -> tuple[Timed, dict[str, Any]]:
    """One timed ProjectionRunner run from nothing to ``events`` tracked; (run, the view's rows)."""

    class RunnerShop(ShopApp):  # as the runner constructs applications: application_class(env)
        name = APP_NAME

        def __init__(self, env: Any = None) -> None:
            super().__init__(settings)

    projection_class = type(f"Bench_{name}", (LibraryCustomerOrders,), {"name": name})
    cpu_started, started = time.process_time(), time.perf_counter()
    runner: ProjectionRunner[ShopApp, PostgresCustomerOrdersView] = ProjectionRunner(
        application_class=RunnerShop,
        projection_class=projection_class,
        view_class=PostgresCustomerOrdersView,
        env=eventsourcing_env(settings, settings.postgres_schema),
    )
    view, timeline = runner.view, []
    try:
        with runner:
            while (tracked := view.max_tracking_id(APP_NAME) or 0) < events:
                if tracked and not timeline:
                    timeline.append((time.perf_counter() - started, tracked))
                if runner.is_interrupted.is_set():
                    runner.run_forever(timeout=0)  # raises the runner's error, if any
                    raise BenchmarkError("the projection runner stopped early")
                if time.perf_counter() - started > RUN_TIMEOUT:
                    raise BenchmarkError(f"the runner did not reach {events} in {RUN_TIMEOUT} s")
                time.sleep(0.02)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        rows = view.rows()
    finally:
        view.datastore.close()
    first = timeline[0] if timeline else (None, 0)
    return Timed(seconds, events, first[0], first[1], cpu, cpu), rows


# --- raw bulk and the worker's time split -----------------------------------------------


def run_raw(es: Elasticsearch, index: str, bodies: Sequence[bytes]) -> Timed:
    """Bulk ``bodies`` into ``index`` one request after the other; timed."""
    es.indices.create(
        index=index,
        settings={"number_of_shards": 1, "number_of_replicas": 0},
        mappings=CustomerOrdersProjection.mapping(),
    )
    first: tuple[float, int] | None = None
    cpu_started, started = time.process_time(), time.perf_counter()
    for body in bodies:
        response = es.bulk(index=index, operations=body)
        if response["errors"]:
            failed = next(i for i in response["items"] if next(iter(i.values())).get("error"))
            raise BenchmarkError(f"raw bulk into {index} failed: {failed}")
        first = first or (time.perf_counter() - started, len(response["items"]))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    count = sum(body.count(b"\n") // 2 for body in bodies)
    return Timed(seconds, count, first[0] if first else None, first[1] if first else 0, cpu, cpu)


def measure_split(settings: Settings, name: str, events: int) -> dict[str, Any]:
    """One worker run with every step timed; the wrapping costs a little."""
    timer = StepTimer()
    worker, loop = worker_loop(settings, projection_named(CustomerOrdersProjection, name))
    read_model = worker.read_model
    for owner, attribute, key in (
        (worker.applier, "apply", "apply"),
        (read_model, "load", "load"),
        (read_model, "write", "write"),
        (read_model, "save_checkpoints", "checkpoints"),
        (read_model.es, "mget", "mget"),
    ):
        setattr(owner, attribute, timer.wrap(key, getattr(owner, attribute)))
    read_model.es.bulk = timer.wrap(lambda: f"bulk:{timer.parent()}", read_model.es.bulk)  # type: ignore[method-assign]

    class TimedConsumer(Consumer):  # type: ignore[misc]
        poll = timer.wrap("consume", Consumer.poll)
        consume = timer.wrap("consume", Consumer.consume)
        commit = timer.wrap("commit", Consumer.commit)

    snapshot: dict[str, float] = {}
    started = time.perf_counter()
    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(consumer_module(), "Consumer", TimedConsumer))
        patches.enter_context(
            mock.patch.object(Envelope, "decode", timer.wrap("decode", Envelope.decode))
        )
        run = loop.until(events, RUN_TIMEOUT, on_reached=lambda: snapshot.update(timer.seconds))
    steps = {key: snapshot.get(key, 0.0) for _label, key in SPLIT_STEPS}
    steps["checkpoints"] += snapshot.get("bulk:checkpoints", 0.0)
    steps["start"] = timer.first.get("consume", started) - started
    steps["other"] = run.seconds - sum(v for k, v in steps.items() if k != "other")
    return {
        "seconds": run.seconds,
        "events_per_second": events / run.seconds,
        "batch_size": settings.projection_batch_size,
        "worker_thread_cpu_seconds": run.thread_cpu_seconds,
        "process_cpu_seconds": run.process_cpu_seconds,
        "steps": split(steps, SPLIT_STEPS, run.seconds),
        "calls": dict(timer.calls),
        "note": "exclusive wall time per step of the worker's loop (a step's time excludes "
        "the wrapped steps inside it); the wrappers cost about a microsecond per call",
    }


# --- the run ------------------------------------------------------------------------


@dataclass
class Bench:
    """One run's store, topic, expected documents, and what it creates (to clean up)."""

    settings: Settings
    config: Config
    session: cli.Session
    head: int = 0
    expected: Expected = field(default_factory=lambda: Expected({}, []))
    bodies: dict[int, list[bytes]] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    notes: dict[str, float] = field(default_factory=dict)
    split: dict[str, Any] | None = None
    profile: list[dict[str, Any]] | None = None
    profile_path: str | None = None

    def __post_init__(self) -> None:
        self.es = es_backend.client(self.settings).options(request_timeout=120)
        self.topic = Topology.of(self.settings, APP_NAME).topic("Order")

    def setup(self) -> None:
        """Fill the store, publish it all, compute the expected documents (none timed)."""
        config, console, settings = self.config, self.session.console, self.settings
        self.notes["fill_seconds_not_timed"], self.head = fill_store(
            settings, config.events, config.customers, config.fill_chunk, console
        )
        self.notes["publish_seconds_not_timed"] = publish_all(settings, self.head)
        on_topic = messages_on(settings, [self.topic])  # with the relay's watermarks
        if on_topic < self.head:
            raise BenchmarkError(f"{on_topic} messages on {self.topic}, expected {self.head}")
        self.expected = expected_documents(settings)
        self.bodies = {b: bulk_bodies(self.expected, b) for b in config.batch_sizes}
        raw_bytes = sum(len(body) for body in self.bodies[config.batch_sizes[0]])
        # Long-lived objects: keep them out of the cyclic collector's way during the runs.
        gc.collect()
        gc.freeze()
        console.log(
            f"published {on_topic:,} messages; {len(self.expected.final):,} customers; raw bulk "
            f"bodies {raw_bytes / 1e6:.1f} MB ({raw_bytes / self.head:.0f} bytes per event)"
        )

    def settings_for(self, tag: str, batch_size: int | None) -> Settings:
        """Settings with a fresh index prefix (and the batch size) for one run."""
        update: dict[str, Any] = {"index_prefix": f"{self.session.tag}-{tag}-"}
        if batch_size is not None:
            update["projection_batch_size"] = batch_size
        return self.settings.model_copy(update=update)

    def run(self, v: Variant, tag: str, events: int | None = None) -> tuple[Timed, int | None]:
        """One run of ``v`` on fresh indices, tables or group; checked if it applied all.

        With the run, the index operations Elasticsearch counted (ES sides, whole runs).
        """
        settings = self.settings_for(tag, v.batch_size)
        if v.side == "eventsourcing":
            run, rows = run_library(self.settings, f"es_customer_orders_{tag}", events or self.head)
            if events is None:
                found = {
                    k: CustomerOrders.model_validate(r).model_dump(mode="json")
                    for k, r in rows.items()
                }
                check_documents(found, self.expected, f"eventsourcing view {tag}")
            return run, None
        if v.side == "raw":
            assert v.batch_size is not None
            index, bodies = f"{self.session.tag}-raw-{tag}", self.bodies[v.batch_size]
            if events is not None:
                bodies = bodies[: max(1, events // v.batch_size)]
            run = run_raw(self.es, index, bodies)
        else:
            projection = projection_named(CustomerOrdersProjection, f"customer_orders_{tag}")
            self.groups.append(Topology.of(settings, APP_NAME).projection_group(projection.name))
            _worker, loop = worker_loop(settings, projection)
            run = loop.until(events or self.head, RUN_TIMEOUT)
            index, checkpoints = (
                IndexNames.of(settings).alias(projection.name),
                IndexNames.of(settings).checkpoints_index,
            )
            if events is None:
                # The status reads checkpoints and counts documents by search: refresh first.
                self.es.indices.refresh(index=[index, checkpoints])
                status = Runtime(settings).projection_status(APP_NAME, projection)
                if (status.lag, status.position, status.documents) != (
                    0,
                    self.head,
                    len(self.expected.final),
                ):
                    raise BenchmarkError(f"{projection.name} after the run: {status}")
        if events is not None:
            return run, None
        check_documents(es_documents(self.es, index), self.expected, index)
        return run, index_operations(self.es, index)

    def rounds(self, variants: Sequence[Variant]) -> list[Measurement]:
        """Each side once on the first events (untimed), then the interleaved rounds."""
        config, console = self.config, self.session.console
        if config.warmup:
            warm = min(config.warmup, self.head)
            for side in ("cqrskit", "eventsourcing", "raw"):
                self.run(next(v for v in variants if v.side == side), f"warmup_{side}", warm)
            console.log(f"warm-up done (about {warm:,} events each side, not timed)")
        by_key = {v.key: v for v in variants}

        def one(m: Measurement, round_no: int) -> tuple[float, dict[str, Any], str]:
            run, ops = self.run(by_key[m.key], f"r{round_no}-{m.key}".replace("-", "_"))
            cpu = 100 * run.process_cpu_seconds / run.seconds
            note = f"({run.seconds:.2f} s, process CPU {cpu:.0f}%" + (
                f", {ops:,} index ops)" if ops else ")"
            )
            return run.rate(), {**run.figures(), "index_operations": ops}, note

        measurements = [Measurement(v.key, v.label) for v in variants]
        interleaved(measurements, config.rounds, one, console)
        return measurements

    def extras(self) -> None:
        """The untimed instrumented worker run and, if asked, the profiled one."""
        self.bodies = {}
        gc.unfreeze()
        gc.collect()
        b = self.config.batch_sizes[0]
        if self.config.split:
            self.groups.append(
                Topology.of(self.settings, APP_NAME).projection_group("customer_orders_split")
            )
            self.split = measure_split(
                self.settings_for("split", b), "customer_orders_split", self.head
            )
            self.session.console.log(
                f"instrumented worker run: {self.split['events_per_second']:,.0f} events/s"
            )
        if self.config.profile:
            path = self.session.profile_path()
            self.groups.append(
                Topology.of(self.settings, APP_NAME).projection_group("customer_orders_profile")
            )
            projection = projection_named(CustomerOrdersProjection, "customer_orders_profile")
            _worker, loop = worker_loop(self.settings_for("profile", b), projection)
            wrap, rows = profiled(path)
            loop.run = wrap(loop.run)
            loop.until(self.head, RUN_TIMEOUT)
            self.profile, self.profile_path = rows, str(path)


# --- output ---------------------------------------------------------------------------


def print_tables(
    session: cli.Session, bench: Bench, ms: Sequence[Measurement], found: Sequence[Ratio]
) -> None:
    """The rounds table, the ratios, then the worker's time split and profile if measured."""
    console = session.console
    rows = []
    for m in ms:
        first, after = m.median_of("first_seconds"), m.median_of("events_per_second_after_first")
        ops = m.median_of("index_operations")
        cpu = statistics.median(100 * r["process_cpu_seconds"] / r["seconds"] for r in m.rounds)
        rows.append(
            [
                m.label,
                *rate_cells(m),
                f"{m.median_of('seconds'):.2f}",
                f"{1000 * first:.0f} ms" if first else "-",
                f"{after:,.0f}" if after else "-",
                f"{cpu:.0f}%",
                f"{ops:,.0f}" if ops else "-",
            ]
        )
    table(
        console,
        f"Projecting {bench.head:,} Order.Placed events into {len(bench.expected.final):,} "
        f"customer documents: {bench.config.rounds} interleaved rounds, fresh read model each",
        "variant | median events/s | min - max | spread | median s | first batch | "
        "events/s after it | process CPU | ES index ops",
        rows,
    )
    table(
        console,
        "Ratios (events/s over the baseline's, same run)",
        ["variant", "baseline", "ratio of medians", "per-round ratios"],
        (
            [
                r.variant,
                r.baseline,
                f"{r.ratio_of_medians:.2f}x",
                ", ".join(f"{x:.2f}" for x in r.round_ratios),
            ]
            for r in found
        ),
    )
    console.print(
        "first batch: from the start to the first progress recorded (cqrskit: first batch "
        "committed; eventsourcing: first tracking row; raw: first bulk response); events/s "
        "after it: the rest over the rest of the time. process CPU: every thread of this "
        "process (100% = one core); Elasticsearch, Kafka and PostgreSQL run on the same CPUs."
    )
    if bench.split:
        cpu = bench.split["worker_thread_cpu_seconds"] / bench.split["seconds"]
        steps_table(
            console,
            f"Where the worker's time goes (one instrumented run, batch "
            f"{bench.split['batch_size']}, {bench.split['events_per_second']:,.0f} events/s, "
            f"worker thread CPU {100 * cpu:.0f}%)",
            bench.split["steps"],
            bench.head,
        )
    if bench.profile:
        profile_table(console, "cProfile of the worker thread", bench.profile)


def save_chart(
    path: Path, bench: Bench, ms: Sequence[Measurement], found: Sequence[Ratio], title: str
) -> None:
    """Bars of median events/s (whiskers: min and max), and the worker's time split."""
    sides = {v.key: v.side for v in variants_for(bench.config.batch_sizes)}
    split = bench.split and (
        bench.split["steps"],
        "seconds (one instrumented worker run)",
        f"Where the worker's wall time goes (batch {bench.split['batch_size']}, "
        f"{bench.split['events_per_second']:,.0f} events/s with the timers on)",
    )

    def label(m: Measurement) -> str:
        mine = [r for r in found if r.variant == m.key]
        short = {
            r.baseline: "eventsourcing" if r.baseline == "eventsourcing" else "raw" for r in mine
        }
        return (
            f"{m.median:,.0f}"
            + "".join(f"\n{r.ratio_of_medians:.2f}x {short[r.baseline]}" for r in mine)
            + ("" if mine else "\nbaseline")
        )

    colours = [COLOURS[sides[m.key]] for m in ms]
    ticks = [m.label.replace(", ", ",\n") for m in ms]
    rounds_chart(path, (11, 5.8), split, ms, colours, label, title, ticks=ticks, fontsize=8)


# --- entry point ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Command-line options."""
    return cli.parse(
        __doc__,
        "30000 events instead of 200000",
        [
            cli.Opt("--events", 200_000, "Order.Placed events (each run applies all)", 30_000, 1),
            cli.Opt("--customers", 1000, "distinct customers", least=1),
            cli.Opt("--rounds", 3, "interleaved rounds per variant", least=1),
            cli.Opt(
                "--batch-sizes",
                "1000,5000",
                "projection_batch_size values (and raw bulk sizes) to measure",
                least=1,
                ints=True,
            ),
            cli.Opt("--warmup", 5000, "events each side applies untimed first", least=0),
            cli.Opt("--fill-chunk", 2000, "new orders saved per transaction", least=1),
        ],
        argv,
        split="worker",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and save the JSON and the chart."""
    config = parse_args(argv)
    session = cli.Session.begin("projections", config.results, 150)
    settings = Settings.load().model_copy(
        update={"postgres_schema": session.tag.replace("-", "_"), "topic_prefix": session.tag}
    )
    machine = machine_info(settings)
    session.console.log(
        f"PostgreSQL {machine['postgres']['server_version']}, Kafka "
        f"{machine['kafka']['version']}, Elasticsearch {machine['elasticsearch']['version']}, "
        f"{machine['nproc']} CPUs, Python {machine['python']}; {config.events:,} events x "
        f"{config.rounds} rounds per variant; batch sizes {list(config.batch_sizes)}, "
        f"{settings.topic_partitions} partitions"
    )
    bench = Bench(settings, config, session)
    variants = variants_for(config.batch_sizes)
    try:
        with fresh_schemas(settings):
            bench.setup()
            ms = bench.rounds(variants)
            bench.extras()
    finally:
        clean_up(
            settings, session.console, indices=session.tag, topics=session.tag, groups=bench.groups
        )
    pairs = [
        (v.key, base)
        for v in variants
        if v.side == "cqrskit"
        for base in ("eventsourcing", f"raw-b{v.batch_size}")
    ]
    found = ratios(ms, pairs)
    print_tables(session, bench, ms, found)
    title = (
        f"Read model from {bench.head:,} events ({len(bench.expected.final):,} customers): "
        "cqrskit worker (Kafka -> ES) vs eventsourcing runner (PG -> PG) vs raw ES bulk\n"
        f"{config.rounds} interleaved rounds, PostgreSQL {machine['postgres']['server_version']}"
        f", Kafka {machine['kafka']['version']}, Elasticsearch "
        f"{machine['elasticsearch']['version']}, {machine['nproc']} CPUs, run {session.stamp}\n"
        "bar: median; whiskers: min and max; label: median and ratios"
    )
    session.save(
        {
            **vars(config),
            "events": bench.head,
            "customers": len(bench.expected.final),
            "event": "Order.Placed (one new Order per event, one line), customers repeating",
            "topic": bench.topic,
            "topic_partitions": settings.topic_partitions,
            **bench.notes,
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
        machine,
        lambda path: save_chart(path, bench, ms, found, title),
        variants=[
            {**row, **{k: v for k, v in asdict(variant).items() if k not in ("key", "label")}}
            for row, variant in zip(variant_rows(ms), variants, strict=True)
        ],
        ratios=[asdict(r) for r in found],
        worker_time_split=bench.split,
        worker_profile_top=bench.profile,
        worker_profile_file=bench.profile_path,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
