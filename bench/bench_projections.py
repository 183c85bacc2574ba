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
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from _kit import cli, report
from _kit.measure import (
    RUN_TIMEOUT,
    BenchmarkError,
    Measurement,
    Ratio,
    StepTimer,
    Timed,
    interleaved,
    ratios,
    split_run,
)
from _kit.product import IndexNames, consumer_module, read_envelopes
from _kit.stack import (
    APP_NAME,
    PublishedOrders,
    check_views,
    eventsourcing_env,
    fresh_schemas,
    messages_on,
)
from confluent_kafka import Consumer
from elasticsearch import Elasticsearch
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
NOTES = {
    "event": "Order.Placed (one new Order per event, one line), customers repeating",
    "cqrskit_timed": "ProjectionWorker.run in a thread, from the thread's start until "
    "worker.processed (counted after each batch's offsets are committed) == N; fresh index "
    "prefix and a projection subclass with its own name (hence its own consumer group, no "
    "committed offsets) per run; includes creating the indices and joining the group",
    "eventsourcing_timed": "from constructing eventsourcing.projection.ProjectionRunner "
    "(creates the view and tracking tables, the application, the subscription) until the "
    "view's max_tracking_id == head; one transaction per event (tracking insert + upsert of "
    "the customer's row), eventsourcing.postgres persistence, same schema",
    "raw_timed": "from the first Elasticsearch bulk request to the last response, one request "
    "at a time; one index operation per event (the customer's document after that event, "
    "view fields only, NDJSON encoded beforehand) into a fresh index created beforehand "
    "with the projection's mapping",
    "clock": "time.perf_counter",
}


@dataclass(frozen=True)
class Variant:
    """One way of building the read model."""

    key: str
    label: str
    side: str
    #: Events per batch (cqrskit: projection_batch_size; raw: operations per bulk request).
    batch_size: int | None = None
    #: The projection's freshness (cqrskit: seconds between the worker's refreshes); None:
    #: the projection's own (1 s).
    freshness: float | None = None


#: The freshness of the variant that refreshes often: what read-your-writes costs the worker.
FRESH = 0.05


def variants_for(sizes: Sequence[int]) -> list[Variant]:
    """The variants, in an order that interleaves cqrskit and the baselines."""
    b = sizes[0]
    fresh = f"cqrskit worker, batch {b}, refreshing every {FRESH:g} s (freshness)"
    return [
        *(Variant(f"cqrskit-b{b}", f"cqrskit worker, batch {b}", "cqrskit", b) for b in sizes),
        Variant(f"cqrskit-b{b}-fresh", fresh, "cqrskit", b, FRESH),
        Variant("eventsourcing", "eventsourcing ProjectionRunner", "eventsourcing"),
        *(Variant(f"raw-b{b}", f"raw ES bulk, {b} ops/request", "raw", b) for b in sizes),
    ]


@dataclass
class Expected:
    """The read model every side must end with, and the raw side's documents per event."""

    final: dict[str, CustomerOrders]
    #: (customer id, the customer's document after the event as JSON), in commit order.
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
    return Expected(docs, per_event)


def bulk_bodies(expected: Expected, batch_size: int) -> list[bytes]:
    """NDJSON bodies of ``batch_size`` index operations each (the index is in the URL)."""
    bodies = []
    for start in range(0, len(expected.per_event), batch_size):
        lines = []
        for customer, document in expected.per_event[start : start + batch_size]:
            lines += [orjson.dumps({"index": {"_id": customer}}), document]
        bodies.append(b"\n".join(lines) + b"\n")
    return bodies


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


def run_library(
    settings: Settings, name: str, events: int
) -> tuple[Timed, dict[str, CustomerOrders]]:
    """One timed ProjectionRunner run from nothing to ``events`` tracked; the run, the view."""

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
        rows = {k: CustomerOrders.model_validate(r) for k, r in view.rows().items()}
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


def measure_split(bench: PublishedOrders, settings: Settings) -> dict[str, Any]:
    """One worker run with every step timed; the wrapping costs a little."""
    timer = StepTimer()
    worker, loop = bench.worker(settings, "customer_orders_split")
    read_model: Any = worker.read_model

    class TimedConsumer(Consumer):  # type: ignore[misc]
        poll = timer.wrap("consume", Consumer.poll)
        consume = timer.wrap("consume", Consumer.consume)
        commit = timer.wrap("commit", Consumer.commit)

    wraps: list[tuple[Any, str, Any]] = [
        (worker.applier, "apply", "apply"),
        (read_model, "load", "load"),
        (read_model, "write", "write"),
        (read_model, "save_checkpoints", "checkpoints"),
        (read_model.es, "mget", "mget"),
        (read_model.es, "bulk", lambda: f"bulk:{timer.parent()}"),
        (Envelope, "decode", "decode"),
    ]
    replaced = [(consumer_module(), "Consumer", TimedConsumer)]
    merged = {"bulk:checkpoints": "checkpoints"}
    run, found = split_run(
        loop,
        bench.head,
        timer,
        wraps,
        SPLIT_STEPS,
        first="consume",
        replaced=replaced,
        merged=merged,
    )
    note = "exclusive wall time per step of the worker's loop (a step's time excludes the "
    note += "wrapped steps inside it); the wrappers cost about a microsecond per call"
    return {
        **found,
        "batch_size": settings.projection_batch_size,
        "worker_thread_cpu_seconds": run.thread_cpu_seconds,
        "note": note,
    }


# --- the run ------------------------------------------------------------------------


class Bench(PublishedOrders):
    """One run's published store, expected documents and runs of every side."""

    def __init__(self, run: cli.Run) -> None:
        super().__init__(run.settings, run.tag, run.groups)
        self.run, self.config = run, run.config
        self.expected = Expected({}, [])
        self.bodies: dict[int, list[bytes]] = {}
        self.split: dict[str, Any] | None = None
        self.profile: list[dict[str, Any]] | None = None
        self.profile_path: str | None = None

    def setup(self) -> None:
        """Fill the store, publish it all, compute the expected documents (none timed)."""
        config, console, settings = self.config, self.run.console, self.settings
        self.publish(config.events, config.customers, config.fill_chunk, console)
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

    def one(self, v: Variant, tag: str, events: int | None = None) -> tuple[Timed, int | None]:
        """One run of ``v`` on fresh indices, tables or group; checked if it applied all.

        With the run, the index operations Elasticsearch counted (ES sides, whole runs).
        """
        whole, final = events is None, self.expected.final
        if v.side == "eventsourcing":
            run, rows = run_library(self.settings, f"es_customer_orders_{tag}", events or self.head)
            if whole:
                check_views(rows, final, f"eventsourcing view {tag}")
            return run, None
        if v.side == "raw":
            assert v.batch_size is not None
            index, bodies = f"{self.tag}-raw-{tag}", self.bodies[v.batch_size]
            if events is not None:
                bodies = bodies[: max(1, events // v.batch_size)]
            run = run_raw(self.es, index, bodies)
        else:
            settings = self.settings_for(tag, projection_batch_size=v.batch_size)
            fresh = {} if v.freshness is None else {"freshness": v.freshness}
            worker, loop = self.worker(settings, f"customer_orders_{tag}", **fresh)
            run = loop.until(events or self.head, RUN_TIMEOUT)
            index = IndexNames.of(settings).alias(worker.projection.name)
            if whole:
                self.check_caught_up(settings, worker.projection, len(final))
        if not whole:
            return run, None
        check_views(self.views(index)[0], final, index)
        return run, index_operations(self.es, index)

    def rounds(self, variants: Sequence[Variant]) -> list[Measurement]:
        """Each side once on the first events (untimed), then the interleaved rounds."""
        config, console = self.config, self.run.console
        if config.warmup:
            warm = min(config.warmup, self.head)
            for side in ("cqrskit", "eventsourcing", "raw"):
                self.one(next(v for v in variants if v.side == side), f"warmup_{side}", warm)
            console.log(f"warm-up done (about {warm:,} events each side, not timed)")
        by_key = {v.key: v for v in variants}

        def one(m: Measurement, round_no: int) -> tuple[float, dict[str, Any], str]:
            run, ops = self.one(by_key[m.key], f"r{round_no}-{m.key}".replace("-", "_"))
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
            self.split = measure_split(self, self.settings_for("split", projection_batch_size=b))
            self.run.console.log(
                f"instrumented worker run: {self.split['events_per_second']:,.0f} events/s"
            )
        if self.config.profile:
            path = self.run.profile_path()
            settings = self.settings_for("profile", projection_batch_size=b)
            loop = self.worker(settings, "customer_orders_profile")[1]
            self.profile, self.profile_path = loop.profiled(path, self.head), str(path)


# --- output ---------------------------------------------------------------------------


def print_tables(bench: Bench, ms: Sequence[Measurement], found: Sequence[Ratio]) -> None:
    """The rounds table, the ratios, then the worker's time split and profile if measured."""
    console = bench.run.console

    def ops(m: Measurement) -> str:
        found = m.median_of("index_operations")
        return f"{found:,.0f}" if found else "-"

    report.rounds_table(
        console,
        f"Projecting {bench.head:,} Order.Placed events into {len(bench.expected.final):,} "
        f"customer documents: {bench.config.rounds} interleaved rounds, fresh read model each",
        ms,
        [
            *report.rate_columns(),
            *report.first_columns("first batch"),
            ("process CPU", report.share("process_cpu_seconds")),
            ("ES index ops", ops),
        ],
    )
    report.ratios_table(console, found)
    console.print(
        "first batch: from the start to the first progress recorded (cqrskit: first batch "
        "committed; eventsourcing: first tracking row; raw: first bulk response); events/s "
        "after it: the rest over the rest of the time. process CPU: every thread of this "
        "process (100% = one core); Elasticsearch, Kafka and PostgreSQL run on the same CPUs."
    )
    if split := bench.split:
        cpu = 100 * split["worker_thread_cpu_seconds"] / split["seconds"]
        report.steps_table(
            console,
            f"Where the worker's time goes (one instrumented run, batch {split['batch_size']}, "
            f"{split['events_per_second']:,.0f} events/s, worker thread CPU {cpu:.0f}%)",
            split["steps"],
            bench.head,
        )
    if bench.profile:
        report.profile_table(console, "cProfile of the worker thread", bench.profile)


def save_chart(path: Path, bench: Bench, ms: Sequence[Measurement], found: Sequence[Ratio]) -> None:
    """Bars of median events/s (whiskers: min and max), and the worker's time split."""
    sides = {v.key: v.side for v in variants_for(bench.config.batch_sizes)}

    def label(m: Measurement) -> str:
        mine = [r for r in found if r.variant == m.key]
        short = {"eventsourcing": "eventsourcing"}
        ratio = [f"\n{r.ratio_of_medians:.2f}x {short.get(r.baseline, 'raw')}" for r in mine]
        return f"{m.median:,.0f}" + "".join(ratio) + ("" if mine else "\nbaseline")

    title = (
        f"Read model from {bench.head:,} events ({len(bench.expected.final):,} customers): "
        "cqrskit worker (Kafka -> ES) vs eventsourcing runner (PG -> PG) vs raw ES bulk\n"
        f"{bench.config.rounds} interleaved rounds, {bench.run.versions()}, run {bench.run.stamp}\n"
        "bar: median; whiskers: min and max; label: median and ratios"
    )
    colours = [COLOURS[sides[m.key]] for m in ms]
    ticks = [m.label.replace(", ", ",\n") for m in ms]
    detail = f"batch {bench.split['batch_size']}, " if bench.split else ""
    report.rounds_chart(
        path,
        (11, 5.8),
        bench.split,
        "worker",
        ms,
        colours,
        label,
        title,
        ticks=ticks,
        fontsize=8,
        detail=detail,
    )


# --- entry point ----------------------------------------------------------------------

OPTIONS = [
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
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and save the JSON and the chart."""
    config = cli.parse(__doc__, "30000 events instead of 200000", OPTIONS, argv, split="worker")
    run = cli.Run.start("projections", config, 150, own=["schema", "topics"])
    run.log(
        f"{config.events:,} events x {config.rounds} rounds per variant; batch sizes "
        f"{list(config.batch_sizes)}, {run.settings.topic_partitions} partitions"
    )
    bench = Bench(run)
    variants = variants_for(config.batch_sizes)
    with run.cleaning(indices=True, topics=True), fresh_schemas(run.settings):
        bench.setup()
        ms = bench.rounds(variants)
        bench.extras()
    pairs = [
        (v.key, base)
        for v in variants
        if v.side == "cqrskit" and v.freshness is None
        for base in ("eventsourcing", f"raw-b{v.batch_size}")
    ]
    # What refreshing for read-your-writes costs: the same worker at its own freshness.
    b = config.batch_sizes[0]
    pairs.append((f"cqrskit-b{b}-fresh", f"cqrskit-b{b}"))
    found = ratios(ms, pairs)
    print_tables(bench, ms, found)
    run.save(
        {
            "events": bench.head,
            "customers": len(bench.expected.final),
            **NOTES,
            "topic": bench.topic,
            "topic_partitions": run.settings.topic_partitions,
            **bench.notes,
        },
        lambda path: save_chart(path, bench, ms, found),
        variants=[
            {**row, **{k: v for k, v in asdict(variant).items() if k not in ("key", "label")}}
            for row, variant in zip(report.variant_rows(ms), variants, strict=True)
        ],
        ratios=[asdict(r) for r in found],
        worker_time_split=bench.split,
        worker_profile_top=bench.profile,
        worker_profile_file=bench.profile_path,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
