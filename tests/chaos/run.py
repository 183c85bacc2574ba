"""Drive the shop through the real stack while killing and stopping its parts.

A steady stream of commands (orders for 20 customers, restocks of 5 items,
and books for a second application stored in the same schema) runs while,
one at a time and then in pairs, the leading relay and a projection worker
are killed with SIGKILL and restarted, and Kafka, Elasticsearch and
PostgreSQL are stopped and started again. Then the faults that no process
kill shows: the leading relay paused with SIGSTOP (a standby must publish
within 15 s; the old leader, resumed, must not publish out of order), a
dead-letter topic that refuses messages, partitions added to the topics
under load, a topic that refuses the relay's messages as too large, and a
view changed under a strict mapping (its events dead-lettered, then
replayed once the mapping is fixed). After each fault the suite
measures how long the pipeline takes to catch up. When the stream stops
and the pipeline has drained, it counts, from three independent sources:

- the client's own ledger of accepted commands (orders per customer,
  units restocked per item): what the read models must show;
- the read models: a missing effect is an order or a unit the ledger has
  and the read model lacks; a doubled effect is one it shows too often;
- Kafka: every event message on the topics, to count events published,
  duplicates delivered (re-sends of the relay's unacknowledged tail) and
  events that first appeared on a partition after a later one;

and it runs ``verify`` (a fresh fold of the event store against each live
read model). It prints a table, saves it as JSON under bench/results/, and
exits 1 on any missing or doubled effect or any drift.

    python -m tests.chaos.run            # the full suite, with pairs (about 15 minutes)
    python -m tests.chaos.run --short    # one of each fault and one pair (about 5 minutes)
    python -m tests.chaos.run --only pause,dlq   # the faults whose names contain these words
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    ResourceType,
)
from psycopg.sql import SQL, Identifier
from rich.console import Console
from rich.table import Table

from cqrskit import CommandBus, CqrskitError, Settings
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.elasticsearch.checkpoints import ElasticsearchCheckpointReader
from cqrskit.adapters.kafka.dead_letters import KafkaDeadLetters as DeadLetterTopic
from cqrskit.adapters.postgres.outbox import read_status
from cqrskit.adapters.postgres.reader import store_head
from cqrskit.envelope import HEADER_EVENT_TYPE, HEADER_POSITION, WATERMARK_EVENT_TYPE
from cqrskit.queries import applied_position
from cqrskit.runtime import Runtime
from cqrskit.topology import IndexNames, Topology
from examples.library.app import AddBook, LibraryApp
from examples.library.app import handlers as library_handlers
from examples.shop import OrderLine, PlaceOrder, RegisterItem, RestockItem, ShopApp, handlers
from examples.shop.demo import clean_up
from projections import CustomerOrdersProjection, StockLevels
from tests.chaos.evolved import EvolvedStockLevels
from tests.processes import CliProcess, cli_env, cli_run, run_cli, wait_until

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
PROJECTIONS = ("customer_orders", "stock_levels")
CUSTOMERS = 20
ITEMS = 5
PRICE = Decimal("2.50")
#: A standby must publish within this many seconds of the leader's pause.
TAKEOVER_LIMIT = 15.0
#: The key of the foreign messages the suite writes to a shop topic.
FOREIGN_KEY = b"chaos-foreign"
console = Console()


def say(message: str) -> None:
    console.print(f"[bold magenta]chaos[/bold magenta] {message}")


# -- the processes and services ----------------------------------------------------------


def _drop_passed(consumer: Consumer, remaining: dict[tuple[str, int], int]) -> None:
    """Forget the partitions whose end the consumer's position has reached.

    A relay transaction's commit marker may be a partition's last offset: it
    is never returned as a message, but the position passes it.
    """
    for tp in consumer.position([TopicPartition(t, p) for t, p in remaining]):
        if tp.offset >= remaining[(tp.topic, tp.partition)]:
            remaining.pop((tp.topic, tp.partition))


def service(name: str, action: str) -> None:
    subprocess.run(
        ["bash", str(SCRIPTS / f"{name}.sh"), action],
        check=True,
        timeout=300,
        stdout=subprocess.DEVNULL,
    )


# -- the command stream --------------------------------------------------------------------


@dataclass
class Ledger:
    """What the client knows it did: the effects the read models must show."""

    accepted: int = 0
    retried: int = 0
    orders: Counter[str] = field(default_factory=Counter)
    restocked: Counter[str] = field(default_factory=Counter)
    books: int = 0


class Stream(threading.Thread):
    """Sends commands at a steady rate; retries a refused one with its idempotency key."""

    def __init__(self, settings: Settings, items: list[UUID], rate: float):
        super().__init__(daemon=True)
        self.settings = settings
        self.items = items
        self.rate = rate
        self.ledger = Ledger()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with ShopApp(self.settings) as app, LibraryApp(self.settings) as library:
                self._send(CommandBus(app, handlers), CommandBus(library, library_handlers))
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def _send(self, bus: CommandBus, library: CommandBus) -> None:
        n = 0
        next_at = time.monotonic()
        while not self.stopping.is_set():
            customer = f"customer-{n % CUSTOMERS:02d}"
            item = self.items[n % ITEMS]
            command: PlaceOrder | RestockItem
            if n % 2 == 0:
                line = OrderLine(sku="tea", quantity=1, unit_price=PRICE)
                command = PlaceOrder(customer_id=customer, lines=[line])
            else:
                command = RestockItem(item_id=item, quantity=1)
            self._dispatch(bus, command, f"chaos-{n}")
            if isinstance(command, PlaceOrder):
                self.ledger.orders[customer] += 1
            else:
                self.ledger.restocked[str(item)] += 1
            self.ledger.accepted += 1
            if n % 5 == 0:  # the second application of the schema, at a fifth of the rate
                self._dispatch(library, AddBook(title=f"book {n}", author="chaos"), f"book-{n}")
                self.ledger.books += 1
            n += 1
            next_at += 1 / self.rate
            self.stopping.wait(max(0.0, next_at - time.monotonic()))

    def _dispatch(
        self, bus: CommandBus, command: PlaceOrder | RestockItem | AddBook, key: str
    ) -> None:
        # What a careful client does with a transient error: the same command
        # again with the same key, so that it is appended exactly once.
        while True:
            try:
                bus.dispatch(command, idempotency_key=key)
                return
            except CqrskitError as exc:
                if not exc.transient:
                    raise
                self.ledger.retried += 1
                time.sleep(0.2)  # a client's back-off between retries


# -- faults ----------------------------------------------------------------------------------


@dataclass
class Fault:
    """One fault: take something down, and bring it back."""

    name: str
    down: Callable[[], None]
    up: Callable[[], None]


@dataclass
class Outcome:
    fault: str
    down_seconds: float
    recovery_seconds: float
    commands_during: int
    #: For a paused leader: seconds until a standby published (None: it never did).
    takeover_seconds: float | None = None


class Chaos:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        run = uuid.uuid4().hex[:6]
        self.env = cli_env(f"chaos-{run}", connect_timeout=3, log_format="json")
        self.settings = Settings.load(
            **{k.removeprefix("CQRSKIT_").lower(): v for k, v in self.env.items()
               if k.startswith("CQRSKIT_") and k != "CQRSKIT_LOG_FORMAT"}
        )  # fmt: skip
        self.logs = ROOT / ".services" / f"chaos-{run}"
        self.logs.mkdir(parents=True, exist_ok=True)
        # Two relays of the shop: one leads, one stands by.
        self.relays = [
            CliProcess(["relay", "run"], self.env, self.logs / f"relay-{n}.log") for n in (1, 2)
        ]
        self.worker = CliProcess(
            ["projections", "run", *PROJECTIONS], self.env, self.logs / "worker.log"
        )
        # A second application in the same schema, with a relay of its own.
        self.library_env = {**self.env, "CQRSKIT_APP": "examples.library.app:LibraryApp"}
        self.library_relay = CliProcess(
            ["relay", "run"], self.library_env, self.logs / "library-relay.log"
        )
        self.items: list[UUID] = []
        self.killed: CliProcess | None = None
        self.leading: CliProcess | None = None
        self.paused: CliProcess | None = None
        self.takeover: float | None = None
        self.foreign_sent = 0
        self.evolved = False

    # -- the faults that no process kill shows ---------------------------------------------

    def leader(self, timeout: float = 60) -> CliProcess:
        """The shop relay that leads now, once one of this run's does.

        Right after a fault killed the leader, the table may still name it
        until its lease runs out (the store may be caught up before that):
        this waits for a live relay of the run to lead, up to ``timeout``.
        """
        found: list[CliProcess] = []
        seen: list[str] = []

        def leading() -> bool:
            active = read_status(self.settings, "shop").active_instance or ""
            seen[:] = [active]
            for relay in self.relays:
                if relay.proc is not None and active.endswith(relay.instance_suffix()):
                    found[:] = [relay]
                    return True
            return False

        try:
            wait_until(leading, timeout, "a relay of this run to lead", interval=0.2)
        except TimeoutError:
            raise RuntimeError(
                f"no relay of this run leads after {timeout:.0f}s "
                f"(the relay table says {seen[0] if seen else ''!r})"
            ) from None
        return found[0]

    def kill_leader(self) -> None:
        # Named before any fault struck: PostgreSQL may be down by now.
        assert self.leading is not None
        self.killed = self.leading
        self.killed.kill9()

    def restart_killed(self) -> None:
        assert self.killed is not None
        self.killed.start()

    # The worker is looked up when the fault strikes: evolve_view replaces it.
    def kill_worker(self) -> None:
        self.worker.kill9()

    def start_worker(self) -> None:
        self.worker.start()

    def pause_leader(self) -> None:
        """SIGSTOP the leader; wait (at most 60 s) until another relay publishes."""
        self.paused = self.leader()
        paused_at = read_status(self.settings, "shop").position
        self.paused.signal(signal.SIGSTOP)
        suffix = self.paused.instance_suffix()

        def taken_over() -> bool:
            try:
                status = read_status(self.settings, "shop")
            except CqrskitError:
                return False
            active = status.active_instance
            moved = active is not None and not active.endswith(suffix)
            return moved and status.position > paused_at

        try:
            self.takeover = wait_until(taken_over, 60, "a standby to publish")
        except TimeoutError:
            self.takeover = None
        say(f"  standby publishing after {self.takeover}s" if self.takeover else "  no takeover")

    def resume_paused(self) -> None:
        assert self.paused is not None
        self.paused.signal(signal.SIGCONT)

    def _topic(self, aggregate_type: str) -> str:
        return Topology.of(self.settings, "shop").topic(aggregate_type)

    def _set_topic_config(self, topic: str, name: str, value: str | None) -> None:
        """Set (or, with None, remove) one topic-level setting."""
        op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
        entry = ConfigEntry(name, value or "", incremental_operation=op)
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
        admin = kafka_backend.admin(self.settings)
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(timeout=30)

    def refuse_letters(self) -> None:
        """Make customer_orders' dead-letter topic refuse, then give it a foreign message."""
        dlq = Topology.of(self.settings, "shop").dead_letter_topic("customer_orders")
        kafka_backend.create_topic(kafka_backend.admin(self.settings), self.settings, dlq, 1)
        self._set_topic_config(dlq, "max.message.bytes", "64")
        producer = Producer(kafka_backend.base_config(self.settings))
        value = b'{"from": "a producer that is not a cqrskit relay"}' * 4
        producer.produce(self._topic("Order"), value, FOREIGN_KEY)
        if producer.flush(30):
            raise RuntimeError("the foreign message was not acknowledged")
        self.foreign_sent += 1

    def accept_letters(self) -> None:
        dlq = Topology.of(self.settings, "shop").dead_letter_topic("customer_orders")
        self._set_topic_config(dlq, "max.message.bytes", None)

    def add_partitions(self) -> None:
        """Three more partitions for each topic the shop's projections read."""
        admin = kafka_backend.admin(self.settings)
        topics = [self._topic("Order"), self._topic("InventoryItem")]
        metadata = admin.list_topics(timeout=30)
        grown = [NewPartitions(t, len(metadata.topics[t].partitions) + 3) for t in topics]
        for future in admin.create_partitions(grown).values():
            future.result(timeout=30)

    def shrink_limit(self) -> None:
        """The order topic refuses every message the relay has for it as too large."""
        self._set_topic_config(self._topic("Order"), "max.message.bytes", "100")

    def restore_limit(self) -> None:
        self._set_topic_config(self._topic("Order"), "max.message.bytes", None)

    def evolve_view(self) -> None:
        """Deploy a stock view with a new field while the index's mapping is strict.

        The worker refuses to start, naming the field and the rebuild; the
        events wait in Kafka until the mapping is fixed.
        """
        self.worker.stop()
        env = {**self.env, "CQRSKIT_PROJECTIONS": "tests.chaos.evolved"}
        refused = cli_run(["projections", "run", *PROJECTIONS], env, timeout=120)
        # The other projections of the process start and stop around it; the
        # refusal is the one error line, and nothing else is an error.
        lines = refused.stderr.strip().splitlines()
        said = [line for line in lines if '"level": "ERROR"' in line or "ERROR" in line[:40]]
        if (
            refused.returncode != 1
            or len(said) != 1
            or "projections rebuild" not in said[0]
            or "Traceback" in refused.stderr
        ):
            raise AssertionError(f"the evolved worker did not refuse in one line: {lines}")

    def migrate_mapping(self) -> None:
        """What an operator does: add the field to the mapping, then start the new worker."""
        es = es_backend.client(self.settings)
        alias = IndexNames.of(self.settings).alias(EvolvedStockLevels.name)
        try:
            properties = EvolvedStockLevels().mapping()["properties"]
            es.indices.put_mapping(index=alias, properties=properties)
        finally:
            es.close()
        env = {**self.env, "CQRSKIT_PROJECTIONS": "tests.chaos.evolved"}
        self.worker = CliProcess(["projections", "run", *PROJECTIONS], env, self.worker.log)
        self.worker.start()
        self.evolved = True

    def faults(self) -> list[list[Fault]]:
        relay = Fault("relay kill -9", self.kill_leader, self.restart_killed)
        worker = Fault("worker kill -9", self.kill_worker, self.start_worker)
        kafka = Fault(
            "Kafka stop", lambda: service("kafka", "stop"), lambda: service("kafka", "start")
        )
        es = Fault(
            "Elasticsearch stop",
            lambda: service("elasticsearch", "stop"),
            lambda: service("elasticsearch", "start"),
        )
        pg = Fault(
            "PostgreSQL restart",
            lambda: service("postgres", "stop"),
            lambda: service("postgres", "start"),
        )
        quiet = [
            [Fault("relay leader SIGSTOP", self.pause_leader, self.resume_paused)],
            [Fault("dead-letter topic refuses", self.refuse_letters, self.accept_letters)],
            [Fault("partitions added", self.add_partitions, lambda: None)],
            [Fault("topic refuses as too large", self.shrink_limit, self.restore_limit)],
            [Fault("view changed, strict mapping", self.evolve_view, self.migrate_mapping)],
        ]
        singles = [[relay], [worker], [kafka], [es], [pg]]
        if self.args.short:
            chosen = [*singles, [relay, worker], *quiet]
        else:
            pairs = [[relay, worker], [kafka, es], [pg, relay], [worker, es], [kafka, worker]]
            chosen = [*singles, *pairs, *quiet]
        if self.args.only:
            words = self.args.only.lower().split(",")
            chosen = [
                faults
                for faults in chosen
                if any(w in " + ".join(f.name for f in faults).lower() for w in words)
            ]
        return chosen

    # -- one run -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the store, register the items, start the relay and the worker."""
        say(f"schema {self.settings.postgres_schema}, logs in {self.logs.relative_to(ROOT)}")
        for env in (self.env, self.library_env):
            run_cli(["db", "init"], env)
        with ShopApp(self.settings) as app:
            bus = CommandBus(app, handlers)
            registered = [
                RegisterItem(sku=f"i{i}", name=f"item {i}", quantity=0) for i in range(ITEMS)
            ]
            self.items = [bus.dispatch(command).aggregate_id for command in registered]
        for relay in self.relays:
            relay.start()
        self.library_relay.start()
        self.worker.start()

    def run(self) -> int:
        self.prepare()
        stream = Stream(self.settings, self.items, self.args.rate)
        stream.start()
        outcomes: list[Outcome] = []
        try:
            self.wait_caught_up(120)
            for faults in self.faults():
                outcomes.append(self.inflict(faults, stream))
                if stream.error is not None:
                    raise stream.error
            stream.stopping.set()
            stream.join(timeout=120)
            if stream.error is not None:
                raise stream.error
            say("stream stopped; draining")
            self.wait_caught_up(300)
            report = self.count(stream.ledger, outcomes)
        finally:
            stream.stopping.set()
            for process in (*self.relays, self.library_relay, self.worker):
                process.stop()
        self.show(report)
        path = ROOT / "bench" / "results" / f"chaos-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        path.write_text(json.dumps(report, indent=2, default=str))
        say(f"saved {path.relative_to(ROOT)}")
        if not self.args.keep:
            clean_up(self.settings)
        return 0 if report["ok"] else 1

    def inflict(self, faults: list[Fault], stream: Stream) -> Outcome:
        name = " + ".join(f.name for f in faults)
        say(f"fault: {name}")
        before = stream.ledger.accepted
        self.takeover = None
        self.leading = self.leader()
        started = time.monotonic()
        for fault in faults:
            fault.down()
        # The outage lasts a while; commands keep coming (or wait, for PostgreSQL).
        time.sleep(self.args.hold)  # the outage's length, not a wait on some state
        for fault in reversed(faults):
            fault.up()
        down = time.monotonic() - started
        recovery = self.wait_caught_up(300)
        say(f"  down {down:.1f}s, caught up {recovery:.1f}s after")
        return Outcome(name, down, recovery, stream.ledger.accepted - before, self.takeover)

    def wait_caught_up(self, timeout: float) -> float:
        """Seconds until the relay and every projection have applied the current head."""
        started = time.monotonic()
        head = self._try(lambda: store_head(self.settings, "shop"), timeout)
        es = es_backend.client(self.settings)
        names = IndexNames.of(self.settings)
        checkpoints = ElasticsearchCheckpointReader(es, names.checkpoints_index)

        library_head = self._try(lambda: store_head(self.settings, "library"), timeout)

        def caught_up() -> bool:
            try:
                if read_status(self.settings, "shop").position < head:
                    return False
                if read_status(self.settings, "library").position < library_head:
                    return False
                return all(
                    applied_position(checkpoints, names, name) >= head for name in PROJECTIONS
                )
            except CqrskitError:
                return False

        try:
            wait_until(caught_up, timeout, f"the pipeline to apply position {head}")
        finally:
            es.close()
        return time.monotonic() - started

    @staticmethod
    def _try(read: Callable[[], int], timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return read()
            except CqrskitError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- counting ------------------------------------------------------------------------

    def count(self, ledger: Ledger, outcomes: list[Outcome]) -> dict[str, object]:
        # Events stored, counted: positions may have gaps (a sequence value
        # taken by an append that failed, e.g. a retried key), so the head
        # is not a count.
        head = self.stored("shop_events")
        books = self.stored("library_events")
        library_topics = {Topology.of(self.settings, "library").topic("Book")}
        published, duplicates, out_of_order = self.kafka_counts(exclude=library_topics)
        books_published, _, books_out_of_order = self.kafka_counts(only=library_topics)
        missing = doubled = 0
        customers = self.read_model(CustomerOrdersProjection.name)
        for customer, placed in ledger.orders.items():
            shown = int(customers.get(customer, {}).get("orders_placed", 0))
            missing += max(0, placed - shown)
            doubled += max(0, shown - placed)
        stock = self.read_model(StockLevels.name)
        for item, units in ledger.restocked.items():
            shown = int(stock.get(item, {}).get("on_hand", 0))
            missing += max(0, units - shown)
            doubled += max(0, shown - units)
        stock_levels = EvolvedStockLevels() if self.evolved else StockLevels()
        drift = {
            p.name: len(Runtime(self.settings).verify("shop", p).drift)
            for p in (CustomerOrdersProjection(), stock_levels)
        }
        letters, _end = DeadLetterTopic(self.settings, "shop", "customer_orders").pending(
            include_replayed=True
        )
        foreign_kept = sum(1 for letter in letters if letter.key == FOREIGN_KEY)
        dead_letters_missing = max(0, self.foreign_sent - foreign_kept)
        takeovers = [o.takeover_seconds for o in outcomes if o.fault == "relay leader SIGSTOP"]
        slow_takeovers = sum(1 for t in takeovers if t is None or t > TAKEOVER_LIMIT)
        ok = (
            missing == 0
            and doubled == 0
            and not any(drift.values())
            and published == head
            and books_published == books == ledger.books
            and out_of_order == books_out_of_order == 0
            and dead_letters_missing == 0
            and slow_takeovers == 0
        )
        return {
            "ok": ok,
            "short": self.args.short,
            "rate": self.args.rate,
            "hold_seconds": self.args.hold,
            "commands_accepted": ledger.accepted,
            "commands_retried_by_the_client": ledger.retried,
            "events_stored": head,
            "events_published": published,
            "duplicates_delivered": duplicates,
            "published_out_of_order": out_of_order + books_out_of_order,
            "second_application_events_stored": books,
            "second_application_events_published": books_published,
            "effects_missing": missing,
            "effects_doubled": doubled,
            "dead_letters_missing": dead_letters_missing,
            "slow_takeovers": slow_takeovers,
            "verify_drift": drift,
            "faults": [asdict(o) for o in outcomes],
        }

    def stored(self, table: str) -> int:
        with pg_backend.connect(self.settings) as conn:
            events = Identifier(self.settings.postgres_schema, table)
            row = conn.execute(SQL("SELECT count(*) FROM {0}").format(events)).fetchone()
        return int(row[0]) if row else 0

    def read_model(self, name: str) -> dict[str, dict[str, object]]:
        es = es_backend.client(self.settings)
        alias = f"{self.settings.index_prefix}{name}"
        try:
            es.indices.refresh(index=alias)
            hits = es.search(index=alias, size=10_000, query={"match_all": {}})["hits"]["hits"]
        finally:
            es.close()
        return {hit["_id"]: hit["_source"] for hit in hits}

    def kafka_counts(
        self, *, only: set[str] | None = None, exclude: frozenset[str] | set[str] = frozenset()
    ) -> tuple[int, int, int]:
        """(distinct events on the topics, messages that repeat one, events out of order).

        An event is out of order when it first appears on a partition after
        an event with a higher position: a re-sent tail repeats what was
        there, but an event seen for the first time below the partition's
        highest position was published out of commit order.
        """
        prefix = f"{self.settings.topic_prefix}."
        consumer = Consumer(
            {
                **kafka_backend.consumer_config(self.settings),
                "group.id": f"chaos-count-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        try:
            metadata = consumer.list_topics(timeout=30)
            ends: dict[tuple[str, int], int] = {}
            for topic, meta in metadata.topics.items():
                if topic.startswith(prefix) and not topic.endswith(".dlq") and topic not in exclude:
                    for partition in meta.partitions if only is None or topic in only else ():
                        _low, high = consumer.get_watermark_offsets(
                            TopicPartition(topic, partition), timeout=30
                        )
                        if high > 0:
                            ends[(topic, partition)] = high
            consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
            seen: Counter[int] = Counter()
            highest: dict[tuple[str, int], int] = {}
            out_of_order = 0
            remaining = dict(ends)
            while remaining:
                messages = consumer.consume(10_000, timeout=5)
                if not messages:
                    _drop_passed(consumer, remaining)
                for message in messages:
                    if message.error():
                        continue
                    key = (message.topic(), message.partition())
                    headers = kafka_backend.headers_of(message)
                    kind = headers.get(HEADER_EVENT_TYPE)
                    raw = headers.get(HEADER_POSITION, b"")
                    if kind is not None and kind != WATERMARK_EVENT_TYPE.encode() and raw.isdigit():
                        position = int(raw)
                        if position not in seen and position < highest.get(key, 0):
                            out_of_order += 1
                        seen[position] += 1
                        highest[key] = max(highest.get(key, 0), position)
                    if message.offset() + 1 >= remaining.get(key, 0):
                        remaining.pop(key, None)
        finally:
            consumer.close()
        return len(seen), sum(n - 1 for n in seen.values()), out_of_order

    def show(self, report: dict[str, object]) -> None:
        table = Table(title="faults")
        for column in ("fault", "down (s)", "caught up after (s)", "commands during"):
            table.add_column(column)
        for fault in report["faults"]:  # type: ignore[attr-defined]
            table.add_row(
                fault["fault"],
                f"{fault['down_seconds']:.1f}",
                f"{fault['recovery_seconds']:.1f}",
                str(fault["commands_during"])
                + (f" (standby after {t:.1f}s)" if (t := fault["takeover_seconds"]) else ""),
            )
        console.print(table)
        totals = Table(title="counts")
        totals.add_column("what")
        totals.add_column("count")
        for key in (
            "commands_accepted",
            "commands_retried_by_the_client",
            "events_stored",
            "events_published",
            "duplicates_delivered",
            "published_out_of_order",
            "second_application_events_stored",
            "second_application_events_published",
            "effects_missing",
            "effects_doubled",
            "dead_letters_missing",
            "slow_takeovers",
            "verify_drift",
        ):
            totals.add_row(key.replace("_", " "), str(report[key]))
        console.print(totals)
        say("PASSED: nothing lost, nothing doubled" if report["ok"] else "FAILED")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="one of each fault and one pair")
    parser.add_argument("--rate", type=float, default=None, help="commands per second")
    parser.add_argument("--hold", type=float, default=None, help="seconds each outage lasts")
    parser.add_argument("--keep", action="store_true", help="keep the schema, topics, indices")
    parser.add_argument("--only", help="comma-separated words: run the faults whose names hold one")
    args = parser.parse_args()
    args.rate = args.rate or (30.0 if args.short else 60.0)
    args.hold = args.hold if args.hold is not None else (3.0 if args.short else 8.0)
    return Chaos(args).run()


if __name__ == "__main__":
    sys.exit(main())
