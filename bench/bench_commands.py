"""Commands per second: cqrskit's command bus against plain eventsourcing and raw psycopg.

Every side writes to the real local PostgreSQL, each variant in a fresh
schema that is dropped at the end. Every command appends exactly one event:

- cqrskit: ``CommandBus.dispatch(RegisterItem(...))`` on the example shop,
  which creates a new ``InventoryItem`` (event ``Registered``: sku, name,
  quantity), with and without an idempotency key per command;
- eventsourcing: its own ``Application`` with its default PostgreSQL
  persistence, saving a plain ``Aggregate`` whose ``Registered`` event has
  the same fields, one event per ``save``; and the same with the library's
  database functions (``POSTGRES_ENABLE_DB_FUNCTIONS=y``);
- raw psycopg: one ``INSERT`` of one row of the same size into a table
  shaped like the library's, then ``COMMIT``; and 100 rows per ``INSERT``
  and ``COMMIT``, the ceiling for writers whose appends are grouped.

Each variant runs sequentially (one thread) and with 4, 16 and 64 writer
threads, each on its own aggregates (or rows). Rounds interleave the
variants of one number of writers, so noise on this shared machine hits
them alike; compare the ratios of one run, not absolute figures across
runs. Run from the repository root::

    .venv/bin/python bench/bench_commands.py [--quick] [--commands N] [--writers 4,16,64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from queue import SimpleQueue
from typing import Any, Literal
from uuid import UUID, uuid4

import psycopg
from _common import RESULTS_DIR, machine_info, utc_stamp, wide_console, write_json
from eventsourcing.application import Application as PlainApplication
from eventsourcing.domain import Aggregate as PlainAggregate
from eventsourcing.domain import event as plain_event
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier
from rich.console import Console
from rich.table import Table

from cqrskit import CommandBus, Settings
from cqrskit.adapters import postgres as pg_backend

# The example shop lives in examples/, which is not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.shop import RegisterItem, ShopApp, handlers

Side = Literal["cqrskit", "eventsourcing", "raw"]
#: Sends one command (or saves one aggregate, or inserts rows) identified by a unique token.
Send = Callable[[str], None]

ITEM_NAME = "Benchmark item"
ITEM_QUANTITY = 10
#: Rows per INSERT and COMMIT of the raw batch variant.
RAW_BATCH_ROWS = 100
#: Timed commands per writer at least, so that many writers do not each send a handful.
MIN_PER_WRITER = 25
#: The raw rows' state: the size and shape of the shop's stored Registered event (369 bytes).
RAW_STATE = (
    '{"timestamp":"2026-12-02T02:46:46.346302Z","originator_topic":'
    '"examples.shop.domain:InventoryItem","metadata":{"event_id":'
    '"5cde147c-55b7-4808-851d-4389de1d371d","schema_version":1,"correlation_id":'
    '"2b865961-5b24-4b59-a888-0b23d4ca94d9","causation_id":'
    '"2b865961-5b24-4b59-a888-0b23d4ca94d9","traceparent":null},"sku":"%s",'
    '"name":"Benchmark item","quantity":10}'
)
RAW_TOPIC = "examples.shop.domain:InventoryItem.Registered"


class BenchmarkError(RuntimeError):
    """The benchmark saw something other than one event per command."""


class PlainItem(PlainAggregate):
    """The baseline's aggregate: the shop's InventoryItem on the plain library."""

    @plain_event("Registered")
    def __init__(self, sku: str, name: str, quantity: int) -> None:
        self.sku = sku
        self.name = name
        self.on_hand = quantity
        self.reservations: dict[str, int] = {}


class BaselineApp(PlainApplication[UUID]):
    """eventsourcing's plain application; its events go to ``baseline_events``."""

    name = "baseline"


@dataclass(frozen=True)
class Family:
    """One way of appending: which side, and how."""

    key: str
    label: str
    side: Side
    idempotency_key: bool = False
    #: eventsourcing only: its database functions (POSTGRES_ENABLE_DB_FUNCTIONS=y).
    db_functions: bool = False
    #: raw only: rows per INSERT and COMMIT.
    rows_per_call: int = 1
    #: Measured with at most this many writers (the others are measured with all).
    max_writers: int | None = None


#: In the order the rounds run them, which interleaves the sides.
FAMILIES = [
    Family("cqrskit", "cqrskit", "cqrskit"),
    Family("eventsourcing", "eventsourcing", "eventsourcing"),
    Family("raw", "raw psycopg INSERT+COMMIT", "raw"),
    Family(
        "cqrskit-key", "cqrskit + idempotency key", "cqrskit", idempotency_key=True, max_writers=4
    ),
    Family("eventsourcing-fn", "eventsourcing, db functions", "eventsourcing", db_functions=True),
    Family(
        "raw-batch",
        f"raw psycopg, {RAW_BATCH_ROWS} rows per COMMIT",
        "raw",
        rows_per_call=RAW_BATCH_ROWS,
        max_writers=4,
    ),
]
#: (variant family, baseline family): the ratios the run reports, at equal writers.
RATIO_PAIRS = [
    ("cqrskit", "eventsourcing"),
    ("cqrskit", "raw"),
    ("cqrskit", "eventsourcing-fn"),
    ("cqrskit-key", "eventsourcing"),
    ("cqrskit-key", "raw"),
    ("eventsourcing", "raw"),
    ("eventsourcing-fn", "raw"),
    ("cqrskit", "raw-batch"),
]


@dataclass(frozen=True)
class Variant:
    """One thing to measure: a family with a number of writers."""

    family: Family
    writers: int

    @property
    def key(self) -> str:
        """``cqrskit-seq``, ``raw-16w``, ..."""
        return f"{self.family.key}-{'seq' if self.writers == 1 else f'{self.writers}w'}"

    @property
    def label(self) -> str:
        """The family's label."""
        return self.family.label

    def calls(self, count: int, per_writer: int) -> int:
        """Sends for a batch of ``count`` commands: raw batches send 20x the rows."""
        if self.family.rows_per_call > 1:
            return max(self.writers, 20 * count // self.family.rows_per_call)
        return max(count, per_writer * self.writers)


@dataclass
class Measurement:
    """A variant's timed rounds and what the store holds afterwards."""

    variant: Variant
    events: int = 0
    seconds: list[float] = field(default_factory=list)
    events_per_second: list[float] = field(default_factory=list)
    events_stored: int | None = None

    @property
    def median(self) -> float:
        """Median events per second over the rounds."""
        return statistics.median(self.events_per_second)

    @property
    def spread_percent(self) -> float:
        """(max - min) / median, in percent: how noisy the rounds were."""
        rates = self.events_per_second
        return 100.0 * (max(rates) - min(rates)) / self.median


@dataclass(frozen=True)
class Ratio:
    """A variant's rate over a baseline's, at the same number of writers."""

    variant: str
    baseline: str
    ratio_of_medians: float
    round_ratios: list[float]


@dataclass(frozen=True)
class Config:
    """What one run measures."""

    commands: int
    warmup: int
    rounds: int
    writers: tuple[int, ...]
    quick: bool
    results: Path


def variants_for(writer_counts: Sequence[int]) -> list[Variant]:
    """The variants, grouped by number of writers, the sides interleaved in a group."""
    return [
        Variant(family, writers)
        for writers in (1, *writer_counts)
        for family in FAMILIES
        if family.max_writers is None or writers <= family.max_writers
    ]


# --- the sides ----------------------------------------------------------------


@dataclass
class Opened:
    """A variant's writer, ready to send: how to count what it stored, and close it."""

    send: Send
    stored: Callable[[], int | None]
    close: Callable[[], None]


def open_cqrskit(settings: Settings, schema: str, pool_size: int, *, keyed: bool) -> Opened:
    """The shop in ``schema`` and a sender of RegisterItem commands."""
    app = ShopApp(
        settings.model_copy(update={"postgres_schema": schema, "postgres_pool_size": pool_size})
    )
    bus = CommandBus(app, handlers)

    def send(token: str) -> None:
        command = RegisterItem(sku=token, name=ITEM_NAME, quantity=ITEM_QUANTITY)
        result = bus.dispatch(command, idempotency_key=token if keyed else None)
        if result.events != 1 or result.replayed:
            raise BenchmarkError(f"command {token} appended {result.events} events")

    return Opened(send, app.recorder.max_notification_id, app.close)


def open_eventsourcing(
    settings: Settings, schema: str, pool_size: int, *, db_functions: bool
) -> Opened:
    """eventsourcing's Application on its default PostgreSQL persistence in ``schema``.

    With ``db_functions`` the library inserts through its ``es_insert_events_uuid``
    function (one statement, no explicit transaction; the function takes no
    table lock, see bench/README.md).
    """
    params = conninfo_to_dict(settings.postgres_dsn)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname", "")),
        "POSTGRES_HOST": str(params.get("host", "localhost")),
        "POSTGRES_PORT": str(params.get("port", 5432)),
        "POSTGRES_USER": str(params.get("user", "")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y" if db_functions else "n",
    }
    app = BaselineApp(env=env)

    def send(token: str) -> None:
        recordings = app.save(PlainItem(sku=token, name=ITEM_NAME, quantity=ITEM_QUANTITY))
        if len(recordings) != 1:
            raise BenchmarkError(f"save {token} recorded {len(recordings)} events")

    return Opened(send, app.recorder.max_notification_id, app.close)


def open_raw(settings: Settings, schema: str, connections: int, rows_per_call: int) -> Opened:
    """psycopg alone: ``rows_per_call`` rows per INSERT, then COMMIT, on ``connections``.

    The table has the columns and indexes of eventsourcing's events table
    (primary key on aggregate id and version, a unique ``notification_id``
    from a sequence); no table lock and no NOTIFY.
    """
    table = Identifier(schema, "raw_events")
    with pg_backend.connect(settings) as conn:
        conn.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} (originator_id uuid NOT NULL, "
                "originator_version bigint NOT NULL, topic text, state bytea, "
                "notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
            ).format(table)
        )
        conn.execute(
            SQL(
                "CREATE UNIQUE INDEX IF NOT EXISTS raw_events_notification_id "
                "ON {0} (notification_id)"
            ).format(table)
        )
    idle: SimpleQueue[psycopg.Connection[Any]] = SimpleQueue()
    opened = [pg_backend.connect(settings, autocommit=False) for _ in range(connections)]
    for conn in opened:
        idle.put(conn)
    if rows_per_call == 1:
        statement = SQL(
            "INSERT INTO {0} (originator_id, originator_version, topic, state) "
            "VALUES (%s, 1, %s, %s)"
        ).format(table)

        def send(token: str) -> None:
            conn = idle.get()
            try:
                conn.execute(statement, (uuid4(), RAW_TOPIC, (RAW_STATE % token).encode()))
                conn.commit()
            finally:
                idle.put(conn)

    else:
        statement = SQL(
            "INSERT INTO {0} (originator_id, originator_version, topic, state) "
            "SELECT i, 1, t, s FROM unnest(%s::uuid[], %s::text[], %s::bytea[]) AS r(i, t, s)"
        ).format(table)

        def send(token: str) -> None:
            ids = [uuid4() for _ in range(rows_per_call)]
            states = [(RAW_STATE % f"{token}-{n}").encode() for n in range(rows_per_call)]
            conn = idle.get()
            try:
                conn.execute(statement, (ids, [RAW_TOPIC] * rows_per_call, states))
                conn.commit()
            finally:
                idle.put(conn)

    def stored() -> int | None:
        with pg_backend.connect(settings) as conn:
            row = conn.execute(SQL("SELECT count(*) FROM {0}").format(table)).fetchone()
        return int(row[0]) if row else None

    def close() -> None:
        for conn in opened:
            conn.close()

    return Opened(send, stored, close)


def open_variant(settings: Settings, v: Variant, schema: str) -> Opened:
    """A writer for ``v``, with a connection per writer thread."""
    family = v.family
    if family.side == "cqrskit":
        return open_cqrskit(settings, schema, v.writers, keyed=family.idempotency_key)
    if family.side == "eventsourcing":
        return open_eventsourcing(settings, schema, v.writers, db_functions=family.db_functions)
    return open_raw(settings, schema, v.writers, family.rows_per_call)


# --- timing -------------------------------------------------------------------


def run_batch(send: Send, writers: int, count: int, prefix: str) -> float:
    """Send ``count`` commands over ``writers`` threads; the seconds it took.

    Each writer uses its own tokens, hence its own aggregates. With several
    writers the clock starts when all of them are released at once.
    """
    shares = [count // writers + (1 if w < count % writers else 0) for w in range(writers)]
    if writers == 1:
        started = time.perf_counter()
        for i in range(count):
            send(f"{prefix}-w0-{i}")
        return time.perf_counter() - started

    barrier = threading.Barrier(writers + 1, timeout=120)

    def write(writer: int) -> None:
        barrier.wait()
        for i in range(shares[writer]):
            send(f"{prefix}-w{writer}-{i}")

    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="writer") as pool:
        futures = [pool.submit(write, w) for w in range(writers)]
        barrier.wait()
        started = time.perf_counter()
        for future in futures:
            future.result()
        return time.perf_counter() - started


# --- PostgreSQL ---------------------------------------------------------------


@contextmanager
def fresh_schemas(settings: Settings, names: Sequence[str]) -> Iterator[None]:
    """Create the schemas, and drop them (with everything in them) afterwards."""
    with pg_backend.connect(settings) as conn:
        for name in names:
            conn.execute(SQL("CREATE SCHEMA {0}").format(Identifier(name)))
    try:
        yield
    finally:
        with pg_backend.connect(settings) as conn:
            for name in names:
                conn.execute(SQL("DROP SCHEMA IF EXISTS {0} CASCADE").format(Identifier(name)))


# --- the run ------------------------------------------------------------------


def measure(settings: Settings, config: Config, stamp: str, console: Console) -> list[Measurement]:
    """Each number of writers in turn: its variants in interleaved rounds.

    A variant's writer is opened for its turn in a round and closed after it
    (pools of 64 connections for every variant at once would pass the
    server's connection limit); the warm-up batch before each timed batch
    fills the pool and the caches again.
    """
    variants = variants_for(config.writers)
    schemas = {v.key: f"bench_{stamp.lower()}_{v.key.replace('-', '_')}" for v in variants}
    measurements = {v.key: Measurement(v) for v in variants}
    with fresh_schemas(settings, list(schemas.values())):
        for writers in (1, *config.writers):
            group = [v for v in variants if v.writers == writers]
            for round_no in range(1, config.rounds + 1):
                # Alternate the order so that no variant always runs first or last.
                order = group if round_no % 2 else list(reversed(group))
                for v in order:
                    run_round(
                        settings,
                        config,
                        v,
                        schemas[v.key],
                        round_no=round_no,
                        m=measurements[v.key],
                    )
                    m = measurements[v.key]
                    console.log(
                        f"round {round_no}/{config.rounds}  {v.label:<32} {v.writers:>2} "
                        f"writer(s) {m.events_per_second[-1]:>8,.0f} events/s"
                    )
    return [measurements[v.key] for v in variants]


def run_round(
    settings: Settings, config: Config, v: Variant, schema: str, *, round_no: int, m: Measurement
) -> None:
    """Open ``v``, warm it up, time one batch, check what it stored, close it."""
    opened = open_variant(settings, v, schema)
    try:
        rows = v.family.rows_per_call
        warm = v.calls(config.warmup, 1)
        timed = v.calls(config.commands, MIN_PER_WRITER)
        run_batch(opened.send, v.writers, warm, f"r{round_no}-warm")
        seconds = run_batch(opened.send, v.writers, timed, f"r{round_no}")
        m.events = timed * rows
        m.seconds.append(seconds)
        m.events_per_second.append(timed * rows / seconds)
        stored = opened.stored()
        expected = round_no * (warm + timed) * rows
        m.events_stored = stored
        if stored != expected:
            raise BenchmarkError(f"{v.key}: {stored} events stored, expected {expected}")
    finally:
        opened.close()


def ratios_of(measurements: Sequence[Measurement]) -> list[Ratio]:
    """The pairs of RATIO_PAIRS, at each number of writers where both were measured."""
    by_family = {(m.variant.family.key, m.variant.writers): m for m in measurements}
    ratios = []
    for mine_family, base_family in RATIO_PAIRS:
        for m in measurements:
            if m.variant.family.key != mine_family:
                continue
            base = by_family.get((base_family, m.variant.writers))
            if base is None:
                continue
            ratios.append(
                Ratio(
                    variant=m.variant.key,
                    baseline=base.variant.key,
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


# --- output -------------------------------------------------------------------


def print_table(
    console: Console, measurements: Sequence[Measurement], ratios: Sequence[Ratio], config: Config
) -> None:
    """One row per variant: median rate, range, spread and the ratios to the baselines."""
    by_pair = {(r.variant, r.baseline.rsplit("-", 1)[0]): r for r in ratios}
    table = Table(
        title=(
            f"Appends on PostgreSQL: {config.commands} commands timed per round "
            f"(at least {MIN_PER_WRITER} per writer), {config.rounds} rounds, one event each"
        )
    )
    table.add_column("variant")
    table.add_column("writers", justify="right")
    table.add_column("median events/s", justify="right")
    table.add_column("min - max", justify="right")
    table.add_column("spread", justify="right")
    table.add_column("vs eventsourcing", justify="right")
    table.add_column("vs raw commit", justify="right")
    table.add_column("per-round vs raw", justify="right")

    def ratio_text(key: str, base: str) -> str:
        ratio = by_pair.get((key, base))
        return f"{ratio.ratio_of_medians:.2f}x" if ratio else ""

    for m in measurements:
        key = m.variant.key
        vs_raw = by_pair.get((key, "raw"))
        table.add_row(
            m.variant.label,
            str(m.variant.writers),
            f"{m.median:,.0f}",
            f"{min(m.events_per_second):,.0f} - {max(m.events_per_second):,.0f}",
            f"{m.spread_percent:.0f}%",
            ratio_text(key, "eventsourcing"),
            ratio_text(key, "raw"),
            ", ".join(f"{r:.2f}" for r in vs_raw.round_ratios) if vs_raw else "",
        )
    console.print(table)
    console.print(
        "ratio = events/s / the baseline's events/s at the same number of writers; compare "
        "ratios within one run, not absolute figures across runs. Raw batches: rows per second."
    )


def save_json(
    path: Path,
    *,
    config: Config,
    machine: dict[str, Any],
    measurements: Sequence[Measurement],
    ratios: Sequence[Ratio],
    started: datetime,
) -> None:
    """Write everything a later reader needs to judge the figures."""
    document = {
        "benchmark": "commands",
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "config": {
            **asdict(config),
            "results": str(config.results),
            "min_commands_per_writer": MIN_PER_WRITER,
            "pool_size": "one connection per writer, for every side",
            "cqrskit_command": "RegisterItem -> InventoryItem.Registered(sku, name, quantity)",
            "baseline_event": "PlainItem.Registered(sku, name, quantity), app.save per aggregate",
            "raw_row": f"one row of {len(RAW_STATE % 'sku-r1-w0-17')} bytes of state into a "
            "table like eventsourcing's events table; INSERT then COMMIT",
            "raw_batch": f"{RAW_BATCH_ROWS} such rows per INSERT (unnest) and COMMIT; "
            "20x the rows of the other variants per batch",
            "clock": "time.perf_counter",
        },
        "machine": {**machine, "load_average_at_end": list(os.getloadavg())},
        "variants": [
            {
                **{f"family_{k}": v for k, v in asdict(m.variant.family).items()},
                "key": m.variant.key,
                "family": m.variant.family.key,
                "label": m.variant.label,
                "writers": m.variant.writers,
                "events_per_round": m.events,
                "rounds": [
                    {"round": n, "seconds": s, "events_per_second": r}
                    for n, (s, r) in enumerate(
                        zip(m.seconds, m.events_per_second, strict=True), start=1
                    )
                ],
                "median_events_per_second": m.median,
                "min_events_per_second": min(m.events_per_second),
                "max_events_per_second": max(m.events_per_second),
                "spread_percent": m.spread_percent,
                "events_stored": m.events_stored,
            }
            for m in measurements
        ],
        "ratios": [asdict(r) for r in ratios],
    }
    write_json(path, document)


COLOURS = {
    "eventsourcing": "#9e9e9e",
    "eventsourcing-fn": "#cfcfcf",
    "raw": "#2ca02c",
    "raw-batch": "#98df8a",
    "cqrskit": "#1f77b4",
    "cqrskit-key": "#ff7f0e",
}


def save_chart(
    path: Path,
    *,
    measurements: Sequence[Measurement],
    ratios: Sequence[Ratio],
    config: Config,
    machine: dict[str, Any],
    stamp: str,
) -> None:
    """Grouped bars of median events/s by writers (log scale; whiskers: min and max)."""
    groups = [1, *config.writers]
    families = [f for f in FAMILIES if any(m.variant.family == f for m in measurements)]
    by_raw = {
        r.variant: r for r in ratios if r.baseline.startswith("raw-") and "batch" not in r.baseline
    }
    width = 0.8 / len(families)
    figure = Figure(figsize=(11, 6), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, family in enumerate(families):
        chosen = [
            (g, m)
            for g, writers in enumerate(groups)
            for m in measurements
            if m.variant.family == family and m.variant.writers == writers
        ]
        xs = [g + (index - (len(families) - 1) / 2) * width for g, _ in chosen]
        medians = [m.median for _, m in chosen]
        errors = [
            [m.median - min(m.events_per_second) for _, m in chosen],
            [max(m.events_per_second) - m.median for _, m in chosen],
        ]
        bars = axes.bar(
            xs,
            medians,
            width,
            yerr=errors,
            capsize=3,
            label=family.label,
            color=COLOURS[family.key],
        )
        for bar, (_, m) in zip(bars, chosen, strict=True):
            ratio = by_raw.get(m.variant.key)
            text = f"{m.median:,.0f}" + (f" ({ratio.ratio_of_medians:.2f}x raw)" if ratio else "")
            axes.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, max(m.events_per_second)),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=6,
                rotation=90,
            )
    axes.set_yscale("log")
    axes.set_xticks(
        range(len(groups)), ["sequential" if g == 1 else f"{g} writers" for g in groups]
    )
    axes.set_ylabel("events (rows) per second, median of rounds, log scale")
    axes.set_ylim(top=axes.get_ylim()[1] * 8)
    axes.legend(loc="upper left", fontsize=7, ncol=3)
    postgres = machine["postgres"]
    axes.set_title(
        "Appends per second, one event per command: cqrskit vs eventsourcing vs raw psycopg\n"
        f"{config.commands} timed commands x {config.rounds} interleaved rounds, "
        f"PostgreSQL {postgres['server_version']} (fsync {postgres['fsync']}, "
        f"synchronous_commit {postgres['synchronous_commit']}), {machine['nproc']} CPUs, "
        f"run {stamp}\nbar: median; whiskers: min and max; label: median and ratio to the raw "
        "single-row commit",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path)


# --- entry point --------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Command-line options to a Config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="500 commands per round")
    parser.add_argument("--commands", type=int, help="timed commands per variant and round")
    parser.add_argument("--warmup", type=int, default=200, help="untimed commands before each")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant")
    parser.add_argument(
        "--writers",
        default="4,16,64",
        help="comma-separated writer threads of the concurrent runs (1 is always measured)",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR, help="where to save the JSON and the chart"
    )
    args = parser.parse_args(argv)
    commands = args.commands or (500 if args.quick else 3000)
    try:
        writers = tuple(sorted({int(w) for w in args.writers.split(",") if w.strip()}))
    except ValueError:
        parser.error("--writers must be comma-separated integers")
    for name, value in (("commands", commands), ("rounds", args.rounds)):
        if value < 1:
            parser.error(f"--{name} must be at least 1")
    if not writers or min(writers) < 2:
        parser.error("--writers must each be at least 2 (1 writer is the sequential run)")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return Config(commands, args.warmup, args.rounds, writers, args.quick, args.results)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table and save the JSON and the chart."""
    config = parse_args(argv)
    console = wide_console(130)
    settings = Settings.load()
    started = datetime.now(UTC)
    stamp = utc_stamp(started)
    machine = machine_info(settings, services=("postgres",))
    console.log(
        f"PostgreSQL {machine['postgres']['server_version']} at {settings.postgres_address()}, "
        f"{machine['nproc']} CPUs, Python {machine['python']}; "
        f"{config.commands} commands x {config.rounds} rounds per variant "
        f"(+{config.warmup} warm-up each), writers 1 and {', '.join(map(str, config.writers))}"
    )
    measurements = measure(settings, config, stamp, console)
    ratios = ratios_of(measurements)
    print_table(console, measurements, ratios, config)
    json_path = config.results / f"commands-{stamp}.json"
    png_path = config.results / f"commands-{stamp}.png"
    save_json(
        json_path,
        config=config,
        machine=machine,
        measurements=measurements,
        ratios=ratios,
        started=started,
    )
    save_chart(
        png_path,
        measurements=measurements,
        ratios=ratios,
        config=config,
        machine=machine,
        stamp=stamp,
    )
    console.print(f"saved {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
