"""Outbox relay throughput: cqrskit's relay against a raw confluent-kafka producer.

One run pre-fills the outbox (the events table) of a fresh PostgreSQL schema
with N events, one new ``Order`` each (not timed), then measures, in
interleaved rounds, each on fresh Kafka topics:

- cqrskit: ``OutboxRelay(settings, "shop")`` run in a thread of this process,
  from its start until the position it records (acknowledged by the broker,
  acks=all) equals the head of the store: from a pre-filled outbox to every
  event acknowledged in Kafka, including the PostgreSQL reads, the envelope
  encoding, and the relay's start (connect, lead, producer, topic check);
- baseline: a raw confluent-kafka ``Producer`` with the relay's producer
  settings, sending the same messages (topics, keys, envelopes, headers;
  read and encoded once beforehand, not timed), from the first ``produce``
  to ``flush()`` returning with every message delivered.

Compare the ratios of one run, not absolute figures across runs: this
machine is shared and noisy. Run from the repository root::

    .venv/bin/python bench/bench_relay.py [--quick] [--events N]
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
from pathlib import Path
from typing import Any, Literal
from unittest import mock

from _common import fresh_schema, machine_info
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from psycopg.sql import SQL
from rich.console import Console
from rich.table import Table

from cqrskit import Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters import postgres as pg_backend
from cqrskit.envelope import HEADER_EVENT_TYPE, HEADER_POSITION, HEADER_TRACEPARENT, encode
from cqrskit.relay import KafkaPublisher, OutboxRelay, PostgresOutbox, read_status, topic_for
from cqrskit.relay import _relay as relay_module

# The example shop lives in examples/, which is not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.shop import Order, OrderLine, ShopApp

RESULTS_DIR = Path(__file__).resolve().parent / "results"

APP_NAME = "shop"
LINE = OrderLine(sku="tea", quantity=1, unit_price="2.00")  # type: ignore[arg-type]
#: How often the main thread looks at the relay's recorded position.
POLL_SECONDS = 0.005
#: Give up on one timed run after this long.
RUN_TIMEOUT = 900.0

Side = Literal["cqrskit", "raw"]
Headers = list[tuple[str, str | bytes | None]]


class BenchmarkError(RuntimeError):
    """A run did not deliver exactly the events of the store."""


@dataclass(frozen=True)
class Variant:
    """One way of getting the outbox into Kafka."""

    key: str
    label: str
    side: Side
    #: raw producer only: a delivery report for every message, or for errors only.
    error_reports_only: bool = False


VARIANTS = [
    Variant("cqrskit", "cqrskit relay", "cqrskit"),
    Variant("raw", "raw producer (baseline)", "raw"),
    Variant(
        "raw-errors-only",
        "raw producer, error-only reports",
        "raw",
        error_reports_only=True,
    ),
]
BASELINE = "raw"


@dataclass(frozen=True)
class Outgoing:
    """One outbox event as the relay publishes it, encoded beforehand."""

    aggregate_type: str
    key: bytes
    value: bytes
    headers: Headers


@dataclass
class Run:
    """One timed run of one variant."""

    seconds: float
    #: Seconds from the start to the first acknowledgement, and how many events it covered.
    first_ack_seconds: float | None
    first_ack_events: int
    #: CPU of the Python thread that reads, encodes and produces.
    thread_cpu_seconds: float
    #: CPU of the whole process: that thread, librdkafka's threads, the poller.
    process_cpu_seconds: float
    messages_on_topics: int

    def events_per_second(self, events: int) -> float:
        return events / self.seconds

    def events_per_second_after_first_ack(self, events: int) -> float | None:
        """The rate once the pipeline runs: without the start and the first round trip."""
        if self.first_ack_seconds is None or self.seconds <= self.first_ack_seconds:
            return None
        return (events - self.first_ack_events) / (self.seconds - self.first_ack_seconds)


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
    def median_after_first_ack(self) -> float | None:
        """Median events per second after the first acknowledgement, if known."""
        rates = [r.events_per_second_after_first_ack(self.events) for r in self.runs]
        known = [r for r in rates if r is not None]
        return statistics.median(known) if known else None

    @property
    def spread_percent(self) -> float:
        """(max - min) / median, in percent: how noisy the rounds were."""
        rates = self.events_per_second
        return 100.0 * (max(rates) - min(rates)) / self.median


@dataclass(frozen=True)
class Ratio:
    """A variant's rate over the baseline's."""

    variant: str
    baseline: str
    ratio_of_medians: float
    round_ratios: list[float]


@dataclass(frozen=True)
class Config:
    """What one run measures."""

    events: int
    rounds: int
    warmup: int
    fill_chunk: int
    quick: bool
    split: bool
    profile: bool
    results: Path


# --- the outbox -----------------------------------------------------------------


def fill_outbox(settings: Settings, events: int, chunk: int, console: Console) -> float:
    """Append ``events`` new orders, ``chunk`` aggregates per transaction; the seconds."""
    started = time.perf_counter()
    next_report = events // 4
    with ShopApp(settings) as app:
        for start in range(0, events, chunk):
            app.save(
                *[
                    Order(customer_id=f"bench-{i}", lines=[LINE])
                    for i in range(start, min(events, start + chunk))
                ]
            )
            done = min(events, start + chunk)
            if done >= next_report and done < events:
                console.log(f"  filled {done:,} / {events:,}")
                next_report += events // 4
    return time.perf_counter() - started


def store_head(settings: Settings) -> int:
    """The highest position in the store."""
    outbox = PostgresOutbox(settings, APP_NAME)
    with pg_backend.connect(settings) as conn:
        row = conn.execute(
            SQL("SELECT coalesce(max(notification_id), 0), count(*) FROM {0}").format(outbox.events)
        ).fetchone()
    assert row is not None
    if int(row[0]) != int(row[1]):
        raise BenchmarkError(f"the store has gaps: head {row[0]}, {row[1]} events")
    return int(row[0])


def encoded_messages(settings: Settings) -> list[Outgoing]:
    """Every outbox row, read once and encoded exactly as the relay does."""
    outbox = PostgresOutbox(settings, APP_NAME, "bench-reader")
    outbox.connect()
    messages: list[Outgoing] = []
    try:
        after = 0
        while rows := outbox.read(after, 10_000):
            for position, aggregate_id, version, event_topic, state in rows:
                value, event_type, aggregate_type, traceparent = encode(
                    position=position,
                    aggregate_id=aggregate_id,
                    aggregate_version=version,
                    topic=event_topic,
                    state=state,
                )
                headers: Headers = [
                    (HEADER_EVENT_TYPE, event_type.encode()),
                    (HEADER_POSITION, str(position).encode()),
                ]
                if traceparent:
                    headers.append((HEADER_TRACEPARENT, traceparent.encode()))
                messages.append(Outgoing(aggregate_type, aggregate_id.encode(), value, headers))
            after = rows[-1][0]
    finally:
        outbox.close()
    return messages


# --- Kafka ----------------------------------------------------------------------


class Topics:
    """Creates each run's fresh topics beforehand, and deletes them all at the end."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.admin: AdminClient = kafka_backend.admin(settings)
        self.created: list[str] = []

    def create(self, topics: Sequence[str], partitions: int | None = None) -> None:
        """Create ``topics`` and wait until every partition has a leader."""
        count = partitions or self.settings.topic_partitions
        for topic in topics:
            kafka_backend.create_topic(self.admin, self.settings, topic, count)
            self.created.append(topic)
        deadline = time.monotonic() + 30
        for topic in topics:
            while True:
                metadata = self.admin.list_topics(topic=topic, timeout=10).topics.get(topic)
                found = metadata.partitions if metadata and not metadata.error else {}
                if len(found) == count and all(p.leader >= 0 for p in found.values()):
                    break
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"topic {topic} has no leader after 30 s")
                time.sleep(0.1)

    def messages_on(self, topics: Sequence[str]) -> int:
        """Messages stored in ``topics`` (high watermarks: the topics are fresh)."""
        consumer = Consumer(
            {**kafka_backend.base_config(self.settings), "group.id": "bench-relay-counter"}
        )
        try:
            total = 0
            for topic in topics:
                for partition in range(self.settings.topic_partitions):
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=10
                    )
                    total += high - low
            return total
        finally:
            consumer.close()

    def delete_all(self) -> None:
        """Delete every topic this run created."""
        if not self.created:
            return
        for future in self.admin.delete_topics(self.created, operation_timeout=30).values():
            future.result(timeout=60)
        self.created.clear()


def topics_for(settings: Settings, aggregate_types: Sequence[str]) -> dict[str, str]:
    """aggregate type -> topic, as the relay names them."""
    return {t: topic_for(settings, APP_NAME, t) for t in aggregate_types}


def producer_config(settings: Settings) -> dict[str, Any]:
    """The relay's producer settings, copied from cqrskit/relay/_publisher.py.

    Without its transactions (decision 0008): the baseline is a plain
    idempotent producer, so the ratio includes what fencing costs.
    """
    return {
        **kafka_backend.base_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": settings.relay_compression,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "message.timeout.ms": 0,
        "enable.gapless.guarantee": True,
    }


def thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds used so far by ``thread`` (Linux: its pthread CPU clock)."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


# --- the two sides --------------------------------------------------------------


@dataclass
class RelayRun:
    """An in-process relay in a thread, watched until it has published everything."""

    settings: Settings
    relay_name: str
    relay: OutboxRelay = field(init=False)
    errors: list[BaseException] = field(default_factory=list)
    wrap_run: Callable[[Callable[[], None]], Callable[[], None]] | None = None

    def __post_init__(self) -> None:
        self.relay = OutboxRelay(self.settings, APP_NAME, self.relay_name)

    def _target(self) -> None:
        run = self.relay.run if self.wrap_run is None else self.wrap_run(self.relay.run)
        try:
            run()
        except BaseException as exc:  # reported by the watcher
            self.errors.append(exc)

    def until(self, position: int, on_caught_up: Callable[[], None] | None = None) -> Run:
        """Start the relay; time it until its recorded position reaches ``position``."""
        thread = threading.Thread(target=self._target, name="relay", daemon=True)
        cpu_started = time.process_time()
        started = time.perf_counter()
        thread.start()
        first_ack: float | None = None
        first_acked = 0
        try:
            while True:
                recorded = self.relay.position
                now = time.perf_counter()
                if recorded is not None and first_ack is None:
                    first_ack, first_acked = now - started, recorded
                if recorded is not None and recorded >= position:
                    seconds = now - started
                    process_cpu = time.process_time() - cpu_started
                    relay_cpu = thread_cpu(thread)
                    break
                if self.errors or not thread.is_alive():
                    raise BenchmarkError(f"the relay stopped early: {self.errors!r}")
                if now - started > RUN_TIMEOUT:
                    raise BenchmarkError(f"the relay did not reach {position} in {RUN_TIMEOUT} s")
                time.sleep(POLL_SECONDS)
            if on_caught_up is not None:
                on_caught_up()
        finally:
            self.relay.stop()
            thread.join(timeout=120)
        if thread.is_alive() or self.errors:
            raise BenchmarkError(f"the relay did not stop cleanly: {self.errors!r}")
        status = read_status(self.settings, APP_NAME, self.relay_name)
        if status.position < position:
            raise BenchmarkError(f"relay recorded {status.position}, expected {position}")
        return Run(seconds, first_ack, first_acked, relay_cpu, process_cpu, messages_on_topics=-1)


def run_relay(settings: Settings, relay_name: str, head: int) -> Run:
    """One timed relay run from position 0 to ``head``."""
    return RelayRun(settings, relay_name).until(head)


def run_raw(
    settings: Settings,
    batch: Sequence[tuple[str, bytes, bytes, Headers]],
    variant: Variant,
    ready_topic: str,
) -> Run:
    """Produce ``batch`` with a raw producer and flush; timed from first produce to flush.

    The producer is made ready first (untimed): metadata of the topics fetched,
    and one message sent to ``ready_topic`` and acknowledged, so that its
    connection and its idempotent producer id are in place, as in a producer
    that has been running for a while.
    """
    delivered = 0
    first_ack: list[float] = []
    failures: list[str] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        nonlocal delivered
        if error is not None:
            failures.append(error.str())
            return
        if not delivered:
            first_ack.append(time.perf_counter())
        delivered += 1

    def on_error(error: KafkaError) -> None:
        if error.fatal():
            failures.append(error.str())

    config = {**producer_config(settings), "on_delivery": on_delivery, "error_cb": on_error}
    if variant.error_reports_only:
        config["delivery.report.only.error"] = True
    producer = Producer(config)
    for topic in sorted({topic for topic, _, _, _ in batch}):
        producer.list_topics(topic, timeout=30)
    producer.produce(ready_topic, value=b"ready")
    if producer.flush(60) or failures:
        raise BenchmarkError(f"the raw producer is not ready: {failures[:3]}")
    delivered = 0
    first_ack.clear()
    page = settings.relay_page_size
    produce, poll = producer.produce, producer.poll
    cpu_started = time.process_time()
    thread_started = time.thread_time()
    started = time.perf_counter()
    for start in range(0, len(batch), page):
        for topic, key, value, headers in batch[start : start + page]:
            while True:
                try:
                    produce(topic, value=value, key=key, headers=headers)
                    break
                except BufferError:
                    poll(0.1)
        poll(0)  # like the relay: serve delivery reports once per page
    remaining = producer.flush(RUN_TIMEOUT)
    seconds = time.perf_counter() - started
    thread_cpu_seconds = time.thread_time() - thread_started
    process_cpu = time.process_time() - cpu_started
    if remaining or failures:
        raise BenchmarkError(f"{remaining} messages not flushed, failures: {failures[:3]}")
    if not variant.error_reports_only and delivered != len(batch):
        raise BenchmarkError(f"{delivered} delivery reports for {len(batch)} messages")
    return Run(
        seconds,
        first_ack[0] - started if first_ack else None,
        1,
        thread_cpu_seconds,
        process_cpu,
        messages_on_topics=-1,
    )


# --- where the relay's time goes (an untimed, instrumented run) -------------------


class Split:
    """Wall time per step of the relay's loop, by wrapping its methods."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.first_read: float | None = None

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        seconds, calls = self.seconds, self.calls
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[name] += clock() - started
                calls[name] += 1

        return timed

    def wrap_read(self, function: Callable[..., Any]) -> Callable[..., Any]:
        timed = self.wrap("read", function)

        def read(*args: Any, **kwargs: Any) -> Any:
            if self.first_read is None:
                self.first_read = time.perf_counter()
            return timed(*args, **kwargs)

        return read

    def wrap_poll(self, function: Callable[..., Any]) -> Callable[..., Any]:
        serve = self.wrap("poll(0)", function)
        wait = self.wrap("poll(wait)", function)

        def poll(publisher: KafkaPublisher, timeout: float = 0.0) -> Any:
            return (serve if timeout == 0 else wait)(publisher, timeout)

        return poll


SPLIT_STEPS = [
    ("start: connect, lead, producer", "start"),
    ("read outbox pages (PostgreSQL)", "read"),
    ("encode envelopes", "encode"),
    ("produce (librdkafka enqueue)", "publish"),
    ("build headers, topic lookup, loop", "send-rest"),
    ("serve delivery reports: poll(0)", "poll(0)"),
    ("wait for acks, window full: poll(0.05)", "poll(wait)"),
    ("record position (PostgreSQL)", "record"),
    ("other (loop, retire, heartbeat)", "other"),
]


def measure_split(settings: Settings, relay_name: str, head: int) -> dict[str, Any]:
    """One relay run with every step timed; untimed as a benchmark (the wrapping costs)."""
    split = Split()
    snapshot: dict[str, Any] = {}
    watched = RelayRun(settings, relay_name)
    relay = watched.relay
    relay.outbox.read = split.wrap_read(relay.outbox.read)  # type: ignore[method-assign]
    relay.outbox.record = split.wrap("record", relay.outbox.record)  # type: ignore[method-assign]
    relay._send = split.wrap("send", relay._send)  # type: ignore[method-assign]
    started = time.perf_counter()

    def caught_up() -> None:
        snapshot["seconds"] = dict(split.seconds)
        snapshot["calls"] = dict(split.calls)
        snapshot["first_read"] = split.first_read

    with ExitStack() as patches:
        patches.enter_context(
            mock.patch.object(relay_module, "encode", split.wrap("encode", encode))
        )
        patches.enter_context(
            mock.patch.object(
                KafkaPublisher, "produce", split.wrap("publish", KafkaPublisher.produce)
            )
        )
        patches.enter_context(
            mock.patch.object(KafkaPublisher, "poll", split.wrap_poll(KafkaPublisher.poll))
        )
        run = watched.until(head, on_caught_up=caught_up)
    seconds: dict[str, float] = snapshot["seconds"]
    steps = {
        "start": (snapshot["first_read"] or started) - started,
        "read": seconds.get("read", 0.0),
        "encode": seconds.get("encode", 0.0),
        "publish": seconds.get("publish", 0.0),
        "send-rest": seconds.get("send", 0.0)
        - seconds.get("encode", 0.0)
        - seconds.get("publish", 0.0),
        "poll(0)": seconds.get("poll(0)", 0.0),
        "poll(wait)": seconds.get("poll(wait)", 0.0),
        "record": seconds.get("record", 0.0),
    }
    steps["other"] = run.seconds - sum(steps.values())
    return {
        "seconds": run.seconds,
        "events_per_second": head / run.seconds,
        "relay_thread_cpu_seconds": run.thread_cpu_seconds,
        "process_cpu_seconds": run.process_cpu_seconds,
        "steps": [
            {"step": label, "key": key, "seconds": steps[key], "share": steps[key] / run.seconds}
            for label, key in SPLIT_STEPS
        ],
        "calls": snapshot["calls"],
        "note": "wall time in each step of the relay's loop, summed; the wrappers add "
        "about a microsecond per call, so this run is slower than the timed ones",
    }


def measure_profile(
    settings: Settings, relay_name: str, head: int, path: Path
) -> list[dict[str, Any]]:
    """One relay run under cProfile (relay thread only); the top functions by own time."""
    profiler = cProfile.Profile()

    def profiled(run: Callable[[], None]) -> Callable[[], None]:
        return lambda: profiler.runcall(run)

    RelayRun(settings, relay_name, wrap_run=profiled).until(head)
    profiler.dump_stats(path)
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(filename).name}:{line}({name})",
                "calls": calls,
                "own_seconds": own,
                "cumulative_seconds": cumulative,
            }
        )
    rows.sort(key=lambda r: r["own_seconds"], reverse=True)
    return rows[:25]


# --- the run --------------------------------------------------------------------


@dataclass
class Outcome:
    """Everything measured in one run of the script."""

    measurements: list[Measurement]
    fill_seconds: float
    head: int
    value_bytes_mean: float
    aggregate_types: list[str]
    split: dict[str, Any] | None = None
    profile: list[dict[str, Any]] | None = None
    profile_path: str | None = None


class Bench:
    """One run's outbox, its encoded messages and the topics it creates."""

    def __init__(self, settings: Settings, config: Config, stamp: str, console: Console):
        self.settings = settings
        self.config = config
        self.stamp = stamp
        self.console = console
        self.base = f"bench-relay-{stamp.lower()}"
        self.topics = Topics(settings)
        self.head = 0
        self.messages: list[Outgoing] = []
        self.aggregate_types: list[str] = []

    def fill(self) -> tuple[float, float]:
        """Fill the outbox, read it back encoded; (fill seconds, mean envelope bytes)."""
        config, console = self.config, self.console
        console.log(
            f"filling the outbox of schema {self.settings.postgres_schema} with "
            f"{config.events:,} events ({config.fill_chunk} per transaction)"
        )
        fill_seconds = fill_outbox(self.settings, config.events, config.fill_chunk, console)
        self.head = store_head(self.settings)
        if self.head != config.events:
            raise BenchmarkError(f"the store holds {self.head} events, expected {config.events}")
        self.messages = encoded_messages(self.settings)
        if len(self.messages) != self.head:
            raise BenchmarkError(f"read {len(self.messages)} outbox rows, expected {self.head}")
        self.aggregate_types = sorted({m.aggregate_type for m in self.messages})
        value_mean = statistics.fmean(len(m.value) for m in self.messages)
        # The encoded messages are about a million long-lived objects: left to the
        # cyclic garbage collector, every full collection during a relay run would
        # walk them all (a relay process holds nothing like it). Freeze them.
        gc.collect()
        gc.freeze()
        console.log(
            f"filled in {fill_seconds:.1f} s ({self.head / fill_seconds:,.0f} events/s, not "
            f"timed); envelopes {value_mean:.0f} bytes on average; "
            f"aggregate types {self.aggregate_types}"
        )
        return fill_seconds, value_mean

    def prepare(self, tag: str) -> tuple[Settings, list[str]]:
        """Settings with a fresh topic prefix, and its topics, created."""
        run_settings = self.settings.model_copy(update={"topic_prefix": f"{self.base}-{tag}"})
        names = list(topics_for(run_settings, self.aggregate_types).values())
        self.topics.create(names)
        return run_settings, names

    def raw(self, run_settings: Settings, variant: Variant, events: int | None = None) -> Run:
        """One raw producer run, with its own one-partition topic to get ready on."""
        ready = f"{run_settings.topic_prefix}.ready"
        self.topics.create([ready], partitions=1)
        return run_raw(run_settings, self.batch_for(run_settings)[:events], variant, ready)

    def batch_for(self, run_settings: Settings) -> list[tuple[str, bytes, bytes, Headers]]:
        """The messages with the topics of ``run_settings``: what the raw producer sends."""
        names = topics_for(run_settings, self.aggregate_types)
        return [(names[m.aggregate_type], m.key, m.value, m.headers) for m in self.messages]

    def warm_up(self) -> None:
        """Send the first events untimed with each side (imports, connections, caches)."""
        warm = min(self.config.warmup, self.head)
        run_settings, _ = self.prepare("warmup-cqrskit")
        RelayRun(run_settings, "bench-warmup").until(warm)
        run_settings, _ = self.prepare("warmup-raw")
        self.raw(run_settings, VARIANTS[1], warm)
        self.console.log(f"warm-up done ({warm:,} events each side, not timed)")

    def run_rounds(self) -> list[Measurement]:
        """The timed rounds, alternating the order of the variants."""
        config, head = self.config, self.head
        measurements = {v.key: Measurement(v, head) for v in VARIANTS}
        for round_no in range(1, config.rounds + 1):
            order = VARIANTS if round_no % 2 else list(reversed(VARIANTS))
            for v in order:
                run_settings, names = self.prepare(f"r{round_no}-{v.key}")
                if v.side == "cqrskit":
                    run = run_relay(run_settings, f"bench-r{round_no}", head)
                else:
                    run = self.raw(run_settings, v)
                run.messages_on_topics = self.topics.messages_on(names)
                # The relay also writes watermarks: a few per partition.
                if run.messages_on_topics < head:
                    raise BenchmarkError(
                        f"{v.key}: {run.messages_on_topics} messages on the topics, expected {head}"
                    )
                measurements[v.key].runs.append(run)
                self.console.log(
                    f"round {round_no}/{config.rounds}  {v.label:<34} "
                    f"{run.events_per_second(head):>8,.0f} events/s  "
                    f"({run.seconds:.2f} s, producing thread CPU "
                    f"{100 * run.thread_cpu_seconds / run.seconds:.0f}%)"
                )
        return [measurements[v.key] for v in VARIANTS]

    def extras(self, outcome: Outcome) -> None:
        """The untimed instrumented run and, if asked, the profiled one."""
        if self.config.split:
            run_settings, _ = self.prepare("split")
            outcome.split = measure_split(run_settings, "bench-split", self.head)
            self.console.log(
                f"instrumented relay run: {outcome.split['events_per_second']:,.0f} events/s"
            )
        if self.config.profile:
            run_settings, _ = self.prepare("profile")
            self.config.results.mkdir(parents=True, exist_ok=True)
            path = self.config.results / f"relay-{self.stamp}.prof"
            outcome.profile = measure_profile(run_settings, "bench-profile", self.head, path)
            outcome.profile_path = str(path)
            self.console.log(f"profiled relay run saved to {path}")


def measure(settings: Settings, config: Config, stamp: str, console: Console) -> Outcome:
    """Fill the outbox, then run the interleaved rounds, each on fresh topics."""
    bench = Bench(settings, config, stamp, console)
    with fresh_schema(settings):
        try:
            fill_seconds, value_mean = bench.fill()
            if config.warmup:
                bench.warm_up()
            outcome = Outcome(
                bench.run_rounds(), fill_seconds, bench.head, value_mean, bench.aggregate_types
            )
            bench.messages = []
            gc.unfreeze()
            gc.collect()
            bench.extras(outcome)
        finally:
            bench.topics.delete_all()
    return outcome


def ratios_of(measurements: Sequence[Measurement]) -> list[Ratio]:
    """Every other variant over the raw producer baseline."""
    by_key = {m.variant.key: m for m in measurements}
    base = by_key[BASELINE]
    return [
        Ratio(
            variant=m.variant.key,
            baseline=BASELINE,
            ratio_of_medians=m.median / base.median,
            round_ratios=[
                mine / theirs
                for mine, theirs in zip(m.events_per_second, base.events_per_second, strict=True)
            ],
        )
        for m in measurements
        if m.variant.key != BASELINE
    ]


# --- output ---------------------------------------------------------------------


def print_tables(
    console: Console, outcome: Outcome, ratios: Sequence[Ratio], config: Config
) -> None:
    """The rounds table, then the relay's time split and profile if measured."""
    by_variant = {r.variant: r for r in ratios}
    table = Table(
        title=(
            f"Outbox to Kafka (acks=all): {outcome.head:,} events per run, "
            f"{config.rounds} interleaved rounds, fresh topics each"
        )
    )
    table.add_column("variant")
    table.add_column("median events/s", justify="right")
    table.add_column("min - max", justify="right")
    table.add_column("spread", justify="right")
    table.add_column("median s", justify="right")
    table.add_column("first ack", justify="right")
    table.add_column("events/s after it", justify="right")
    table.add_column("thread CPU", justify="right")
    table.add_column("process CPU", justify="right")
    table.add_column("vs raw (median)", justify="right")
    table.add_column("per-round ratios", justify="right")
    for m in outcome.measurements:
        ratio = by_variant.get(m.variant.key)
        firsts = [r.first_ack_seconds for r in m.runs if r.first_ack_seconds is not None]
        table.add_row(
            m.variant.label,
            f"{m.median:,.0f}",
            f"{min(m.events_per_second):,.0f} - {max(m.events_per_second):,.0f}",
            f"{m.spread_percent:.0f}%",
            f"{statistics.median(r.seconds for r in m.runs):.2f}",
            f"{1000 * statistics.median(firsts):.0f} ms" if firsts else "-",
            f"{m.median_after_first_ack:,.0f}" if m.median_after_first_ack else "-",
            f"{statistics.median(100 * r.thread_cpu_seconds / r.seconds for r in m.runs):.0f}%",
            f"{statistics.median(100 * r.process_cpu_seconds / r.seconds for r in m.runs):.0f}%",
            f"{ratio.ratio_of_medians:.2f}x" if ratio else "1.00x (baseline)",
            ", ".join(f"{r:.2f}" for r in ratio.round_ratios) if ratio else "",
        )
    console.print(table)
    console.print(
        "ratio = events/s / raw producer's events/s; compare ratios within one run, not "
        "absolute figures across runs. first ack: from the start (the relay's thread, or the "
        "first produce) to the first acknowledged message (relay: page); events/s after it: "
        "the rest of the events over the rest of the time. thread CPU: the Python thread that "
        "reads, encodes and produces (the relay's, or the raw loop's); process CPU adds "
        "librdkafka's threads "
        "(100% = one core)."
    )
    if outcome.split:
        cpu = outcome.split["relay_thread_cpu_seconds"] / outcome.split["seconds"]
        split = Table(
            title=(
                f"Where the relay's time goes (one instrumented run, "
                f"{outcome.split['events_per_second']:,.0f} events/s, relay thread CPU "
                f"{100 * cpu:.0f}%)"
            )
        )
        split.add_column("step")
        split.add_column("seconds", justify="right")
        split.add_column("share", justify="right")
        split.add_column("us / event", justify="right")
        for step in outcome.split["steps"]:
            split.add_row(
                step["step"],
                f"{step['seconds']:.2f}",
                f"{100 * step['share']:.0f}%",
                f"{1e6 * step['seconds'] / outcome.head:.1f}",
            )
        console.print(split)
    if outcome.profile:
        profile = Table(title="cProfile of the relay thread: top functions by own time")
        profile.add_column("function")
        profile.add_column("calls", justify="right")
        profile.add_column("own s", justify="right")
        profile.add_column("cumulative s", justify="right")
        for row in outcome.profile[:15]:
            profile.add_row(
                row["function"],
                f"{row['calls']:,}",
                f"{row['own_seconds']:.2f}",
                f"{row['cumulative_seconds']:.2f}",
            )
        console.print(profile)


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
        "benchmark": "relay",
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "config": {
            **asdict(config),
            "results": str(config.results),
            "events": outcome.head,
            "event": "Order.Placed (one new Order per event, one line)",
            "envelope_bytes_mean": outcome.value_bytes_mean,
            "aggregate_types": outcome.aggregate_types,
            "relay_page_size": settings.relay_page_size,
            "relay_pages_in_flight": settings.relay_pages_in_flight,
            "relay_compression": settings.relay_compression,
            "topic_partitions": settings.topic_partitions,
            "topic_replication": settings.topic_replication,
            "producer_config": {
                k: v for k, v in producer_config(settings).items() if k != "logger"
            },
            "fill_seconds_not_timed": outcome.fill_seconds,
            "cqrskit_timed": "OutboxRelay.run in a thread, from thread start until "
            "relay.position (recorded after acks) == store head; polled every "
            f"{POLL_SECONDS * 1000:.0f} ms",
            "raw_timed": "from the first produce() to flush() returning, every message "
            "delivered; messages read and encoded beforehand",
            "topics": "fresh per run, created beforehand (not timed), deleted at the end",
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
                        "events_per_second_after_first_ack": r.events_per_second_after_first_ack(
                            m.events
                        ),
                    }
                    for n, r in enumerate(m.runs, start=1)
                ],
                "median_events_per_second": m.median,
                "min_events_per_second": min(m.events_per_second),
                "max_events_per_second": max(m.events_per_second),
                "spread_percent": m.spread_percent,
                "median_events_per_second_after_first_ack": m.median_after_first_ack,
            }
            for m in outcome.measurements
        ],
        "ratios": [asdict(r) for r in ratios],
        "relay_time_split": outcome.split,
        "relay_profile_top": outcome.profile,
        "relay_profile_file": outcome.profile_path,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


COLOURS = {"cqrskit": "#1f77b4", "raw": "#9e9e9e", "raw-errors-only": "#cfcfcf"}
SPLIT_COLOURS = [
    "#bdbdbd",
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
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
    """Bars of median events/s (whiskers: min and max), and the relay's time split."""
    by_variant = {r.variant: r for r in ratios}
    figure = Figure(figsize=(10, 8.5 if outcome.split else 5.5), dpi=110)
    FigureCanvasAgg(figure)
    if outcome.split:
        grid = figure.add_gridspec(2, 1, height_ratios=[3, 1.3])
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
        color=[COLOURS[m.variant.key] for m in ms],
    )
    for bar, m in zip(bars, ms, strict=True):
        ratio = by_variant.get(m.variant.key)
        text = f"{m.median:,.0f}\n" + (
            f"{ratio.ratio_of_medians:.2f}x raw" if ratio else "baseline"
        )
        axes.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, max(m.events_per_second)),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    axes.set_xticks(range(len(ms)), [m.variant.label for m in ms], fontsize=9)
    axes.set_ylabel("events per second (median of rounds)")
    axes.set_ylim(top=axes.get_ylim()[1] * 1.18)
    axes.set_title(
        f"Outbox to Kafka, acks=all: cqrskit relay vs raw confluent-kafka producer\n"
        f"{outcome.head:,} events per run x {config.rounds} interleaved rounds, "
        f"PostgreSQL {machine['postgres']['server_version']}, Kafka {machine['kafka']['version']}, "
        f"{machine['nproc']} CPUs, run {stamp}\n"
        "bar: median; whiskers: min and max; label: median and ratio to the raw producer",
        fontsize=9,
    )
    if outcome.split:
        left = 0.0
        for step, colour in zip(outcome.split["steps"], SPLIT_COLOURS, strict=True):
            width = max(0.0, step["seconds"])
            split_axes.barh(0, width, left=left, color=colour, label=step["step"])
            if step["share"] >= 0.06:
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
        split_axes.set_xlabel("seconds (one instrumented relay run)")
        split_axes.set_title(
            "Where the relay's wall time goes "
            f"({outcome.split['events_per_second']:,.0f} events/s with the timers on)",
            fontsize=9,
        )
        split_axes.legend(
            loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, fontsize=7, frameon=False
        )
    figure.tight_layout()
    figure.savefig(path)


# --- entry point ----------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Command-line options to a Config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="50000 events instead of 200000")
    parser.add_argument("--events", type=int, help="events in the outbox (each run sends all)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant")
    parser.add_argument(
        "--warmup", type=int, default=10_000, help="events sent untimed by each side first"
    )
    parser.add_argument(
        "--fill-chunk", type=int, default=2000, help="new orders saved per transaction"
    )
    parser.add_argument(
        "--no-split", action="store_true", help="skip the instrumented run (time per step)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="one more relay run under cProfile (saves .prof)"
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR, help="where to save the JSON and the chart"
    )
    args = parser.parse_args(argv)
    events = args.events or (50_000 if args.quick else 200_000)
    for name, value in (
        ("events", events),
        ("rounds", args.rounds),
        ("fill-chunk", args.fill_chunk),
    ):
        if value < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return Config(
        events=events,
        rounds=args.rounds,
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
        console = Console(width=140)  # rich assumes 80 columns when piped; the table needs more
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    settings = Settings.load().model_copy(
        update={"postgres_schema": f"bench_relay_{stamp.lower()}"}
    )
    machine = machine_info(settings, services=("postgres", "kafka"))
    console.log(
        f"PostgreSQL {machine['postgres']['server_version']} at {settings.postgres_address()}, "
        f"Kafka {machine['kafka']['version']} at {settings.kafka_bootstrap}, "
        f"{machine['nproc']} CPUs, Python {machine['python']}; {config.events:,} events x "
        f"{config.rounds} rounds per variant; relay pages of {settings.relay_page_size}, "
        f"{settings.relay_pages_in_flight} in flight, {settings.topic_partitions} partitions"
    )
    outcome = measure(settings, config, stamp, console)
    ratios = ratios_of(outcome.measurements)
    print_tables(console, outcome, ratios, config)
    config.results.mkdir(parents=True, exist_ok=True)
    json_path = config.results / f"relay-{stamp}.json"
    png_path = config.results / f"relay-{stamp}.png"
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
