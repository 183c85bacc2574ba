"""Commands per second: cqrskit's command bus against plain eventsourcing and raw psycopg.

Every command appends one event that creates a new aggregate: cqrskit's
``CommandBus``, eventsourcing's ``Application`` (with and without its database
functions) and raw ``INSERT``+``COMMIT`` rows of the same size, sequentially and
with 4, 16 and 64 writers, in interleaved rounds; then one instrumented
sequential batch. What each variant times: ``bench/README.md``, "Commands per
second". Run from the repository root::

    .venv/bin/python bench/bench_commands.py [--quick] [--commands N] [--writers 4,16,64]
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import SimpleQueue
from typing import Any, Literal
from uuid import UUID, uuid4

import psycopg
from _kit import cli
from _kit.cli import Config
from _kit.machine import machine_info
from _kit.measure import Measurement, Ratio, StepTimer, interleaved, ratios, split
from _kit.product import (
    PostgresEventRecorder,
    pg_backend,
)
from _kit.report import (
    figure,
    median_bars,
    rate_cells,
    ratio_cells,
    save_figure,
    steps_table,
    table,
)
from _kit.stack import eventsourcing_env, fresh_schemas
from eventsourcing.application import Application as PlainApplication
from eventsourcing.domain import Aggregate as PlainAggregate
from eventsourcing.domain import event as plain_event
from psycopg.sql import SQL, Identifier

from cqrskit import CommandBus, Settings
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
#: The steps of an append the instrumented batch times (exclusive wall time).
SPLIT_STEPS = [
    ("command: bus, handler, aggregate, unit of work", "dispatch"),
    ("events to stored records (mapper)", "to_stored_event"),
    ("store: insert_events (group commit: lock, insert, COMMIT)", "insert_events"),
    ("other (the loop)", "other"),
]


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
COLOURS = {
    "eventsourcing": "#9e9e9e",
    "eventsourcing-fn": "#cfcfcf",
    "raw": "#2ca02c",
    "raw-batch": "#98df8a",
    "cqrskit": "#1f77b4",
    "cqrskit-key": "#ff7f0e",
}


@dataclass(frozen=True)
class Variant:
    """One thing to measure: a family with a number of writers."""

    family: Family
    writers: int

    @property
    def key(self) -> str:
        """``cqrskit-seq``, ``raw-16w``, ..."""
        return f"{self.family.key}-{suffix(self.writers)}"

    def calls(self, count: int, per_writer: int) -> int:
        """Sends for a batch of ``count`` commands: raw batches send 20x the rows."""
        if self.family.rows_per_call > 1:
            return max(self.writers, 20 * count // self.family.rows_per_call)
        return max(count, per_writer * self.writers)


def suffix(writers: int) -> str:
    """``seq`` for one writer, ``16w`` for sixteen."""
    return "seq" if writers == 1 else f"{writers}w"


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
    #: cqrskit only: the shop, to read its recorder's group commits and time its steps.
    app: ShopApp | None = None

    def group_commits(self) -> tuple[int, int] | None:
        """Transactions and appends of cqrskit's group commit so far."""
        recorder = self.app.recorder if self.app is not None else None
        return recorder.group_commits if isinstance(recorder, PostgresEventRecorder) else None


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

    return Opened(send, app.recorder.max_notification_id, app.close, app)


def open_eventsourcing(
    settings: Settings, schema: str, pool_size: int, *, db_functions: bool
) -> Opened:
    """eventsourcing's Application on its default PostgreSQL persistence in ``schema``.

    With ``db_functions`` the library inserts through its ``es_insert_events_uuid``
    function (one statement, no explicit transaction; the function takes no
    table lock, see bench/README.md).
    """
    env = eventsourcing_env(
        settings,
        schema,
        POSTGRES_POOL_SIZE=str(pool_size),
        POSTGRES_MAX_OVERFLOW="0",
        POSTGRES_ENABLE_DB_FUNCTIONS="y" if db_functions else "n",
    )
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
    table_name = Identifier(schema, "raw_events")
    with pg_backend.connect(settings) as conn:
        conn.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} (originator_id uuid NOT NULL, "
                "originator_version bigint NOT NULL, topic text, state bytea, "
                "notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
            ).format(table_name)
        )
        conn.execute(
            SQL(
                "CREATE UNIQUE INDEX IF NOT EXISTS raw_events_notification_id "
                "ON {0} (notification_id)"
            ).format(table_name)
        )
    idle: SimpleQueue[psycopg.Connection[Any]] = SimpleQueue()
    opened = [pg_backend.connect(settings, autocommit=False) for _ in range(connections)]
    for conn in opened:
        idle.put(conn)
    columns = "INSERT INTO {0} (originator_id, originator_version, topic, state) "
    if rows_per_call == 1:
        statement = SQL(columns + "VALUES (%s, 1, %s, %s)").format(table_name)

        def rows(token: str) -> tuple[Any, ...]:
            return (uuid4(), RAW_TOPIC, (RAW_STATE % token).encode())

    else:
        statement = SQL(
            columns + "SELECT i, 1, t, s FROM unnest(%s::uuid[], %s::text[], %s::bytea[]) "
            "AS r(i, t, s)"
        ).format(table_name)

        def rows(token: str) -> tuple[Any, ...]:
            states = [(RAW_STATE % f"{token}-{n}").encode() for n in range(rows_per_call)]
            return ([uuid4() for _ in states], [RAW_TOPIC] * rows_per_call, states)

    def send(token: str) -> None:
        values = rows(token)
        conn = idle.get()
        try:
            conn.execute(statement, values)
            conn.commit()
        finally:
            idle.put(conn)

    def stored() -> int | None:
        with pg_backend.connect(settings) as conn:
            row = conn.execute(SQL("SELECT count(*) FROM {0}").format(table_name)).fetchone()
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
    if writers == 1:
        started = time.perf_counter()
        for i in range(count):
            send(f"{prefix}-w0-{i}")
        return time.perf_counter() - started
    shares = [count // writers + (1 if w < count % writers else 0) for w in range(writers)]
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


@dataclass
class Outcome:
    """Everything measured in one run of the script."""

    variants: list[Variant]
    measurements: dict[str, Measurement]
    stored: dict[str, int | None] = field(default_factory=dict)
    split: dict[str, Any] | None = None


def measure(settings: Settings, config: Config, stamp: str, session: cli.Session) -> Outcome:
    """Each number of writers in turn: its variants in interleaved rounds; then the split.

    A variant's writer is opened for its turn in a round and closed after it
    (pools of 64 connections for every variant at once would pass the
    server's connection limit); the warm-up batch before each timed batch
    fills the pool and the caches again.
    """
    variants = variants_for(config.writers)
    schemas = {v.key: f"bench_{stamp.lower()}_{v.key.replace('-', '_')}" for v in variants}
    outcome = Outcome(variants, {v.key: Measurement(v.key, v.family.label) for v in variants})
    by_key = {v.key: v for v in variants}
    with fresh_schemas(settings, *schemas.values()):
        for writers in (1, *config.writers):
            group = [v for v in variants if v.writers == writers]
            interleaved(
                [outcome.measurements[v.key] for v in group],
                config.rounds,
                lambda m, round_no: run_round(
                    settings,
                    config,
                    by_key[m.key],
                    schemas[m.key],
                    round_no=round_no,
                    outcome=outcome,
                ),
                session.console,
            )
        first = next(v for v in variants if v.key == "cqrskit-seq")
        outcome.split = measure_split(settings, config, schemas[first.key], first)
    return outcome


def run_round(
    settings: Settings,
    config: Config,
    v: Variant,
    schema: str,
    *,
    round_no: int,
    outcome: Outcome,
) -> tuple[float, dict[str, Any], str]:
    """Open ``v``, warm it up, time one batch, check what it stored, close it.

    Its rate, the round's other figures, and a note for the log.
    """
    opened = open_variant(settings, v, schema)
    try:
        rows = v.family.rows_per_call
        warm = v.calls(config.warmup, 1)
        timed = v.calls(config.commands, MIN_PER_WRITER)
        run_batch(opened.send, v.writers, warm, f"r{round_no}-warm")
        commits_before = opened.group_commits()
        seconds = run_batch(opened.send, v.writers, timed, f"r{round_no}")
        commits_after = opened.group_commits()
        extra: dict[str, Any] = {"seconds": seconds}
        if commits_before is not None and commits_after is not None:
            transactions = commits_after[0] - commits_before[0]
            appends = commits_after[1] - commits_before[1]
            extra |= {"transactions": transactions, "appends": appends}
        stored = outcome.stored[v.key] = opened.stored()
        expected = round_no * (warm + timed) * rows
        if stored != expected:
            raise BenchmarkError(f"{v.key}: {stored} events stored, expected {expected}")
        return timed * rows / seconds, extra, f"{v.writers:>2} writer(s)"
    finally:
        opened.close()


def measure_split(settings: Settings, config: Config, schema: str, v: Variant) -> dict[str, Any]:
    """One untimed sequential cqrskit batch with its steps timed (a microsecond per call)."""
    opened = open_variant(settings, v, schema)
    app = opened.app
    assert app is not None
    try:
        run_batch(opened.send, 1, config.warmup, "split-warm")
        timer = StepTimer()
        recorder, mapper = app.recorder, app.mapper
        recorder.insert_events = timer.wrap("insert_events", recorder.insert_events)  # type: ignore[method-assign]
        mapper.to_stored_event = timer.wrap("to_stored_event", mapper.to_stored_event)  # type: ignore[method-assign]
        seconds = run_batch(timer.wrap("dispatch", opened.send), 1, config.commands, "split")
    finally:
        opened.close()
    timer.seconds["other"] = seconds - sum(timer.seconds.values())
    return {
        "seconds": seconds,
        "events": config.commands,
        "events_per_second": config.commands / seconds,
        "steps": split(timer.seconds, SPLIT_STEPS, seconds),
        "note": "one sequential batch of cqrskit appends after the rounds; exclusive wall time "
        "of CommandBus.dispatch, the mapper's to_stored_event and the recorder's insert_events",
    }


# --- output -------------------------------------------------------------------


def print_tables(
    session: cli.Session, outcome: Outcome, found: Sequence[Ratio], config: Config
) -> None:
    """One row per variant: median rate, range, spread and the ratios to the baselines."""
    by_pair = {(r.variant, r.baseline.rsplit("-", 1)[0]): r for r in found}
    rows = []
    for v in outcome.variants:
        m = outcome.measurements[v.key]
        vs_raw = by_pair.get((v.key, "raw"))
        per_commit = [r["appends"] / r["transactions"] for r in m.rounds if r.get("transactions")]
        rows.append(
            [
                v.family.label,
                str(v.writers),
                *rate_cells(m),
                *(
                    f"{by_pair[(v.key, base)].ratio_of_medians:.2f}x"
                    if (v.key, base) in by_pair
                    else ""
                    for base in ("eventsourcing", "raw")
                ),
                ratio_cells(vs_raw)[1] if vs_raw else "",
                f"{max(per_commit):.1f}" if per_commit else "",
            ]
        )
    table(
        session.console,
        f"Appends on PostgreSQL: {config.commands} commands timed per round (at least "
        f"{MIN_PER_WRITER} per writer), {config.rounds} rounds, one event each",
        "variant | writers | median events/s | min - max | spread | vs eventsourcing | "
        "vs raw commit | per-round vs raw | appends per commit",
        rows,
    )
    session.console.print(
        "ratio = events/s / the baseline's events/s at the same number of writers; compare "
        "ratios within one run, not absolute figures across runs. Raw batches: rows per second. "
        "appends per commit: cqrskit's group commit, most in a round."
    )
    if outcome.split:
        steps_table(
            session.console,
            f"Where a sequential append's time goes ({outcome.split['events_per_second']:,.0f} "
            "appends/s with the timers on)",
            outcome.split["steps"],
            outcome.split["events"],
        )


def save_chart(
    path: Path,
    outcome: Outcome,
    found: Sequence[Ratio],
    config: Config,
    *,
    machine: dict[str, Any],
    stamp: str,
) -> None:
    """Grouped bars of median events/s by writers (log scale; whiskers: min and max)."""
    groups = [1, *config.writers]
    families = [f for f in FAMILIES if any(v.family == f for v in outcome.variants)]
    by_raw = {
        r.variant: r for r in found if r.baseline.startswith("raw-") and "batch" not in r.baseline
    }
    width = 0.8 / len(families)
    made = figure(11, 6)
    axes = made.add_subplot()
    for index, family in enumerate(families):
        chosen = [
            (g, v)
            for g, n in enumerate(groups)
            for v in outcome.variants
            if v.family == family and v.writers == n
        ]
        ms = [outcome.measurements[v.key] for _, v in chosen]

        def label(m: Measurement) -> str:
            ratio = by_raw.get(m.key)
            return f"{m.median:,.0f}" + (f" ({ratio.ratio_of_medians:.2f}x raw)" if ratio else "")

        median_bars(
            axes,
            ms,
            [COLOURS[family.key]] * len(ms),
            label,
            x=[g + (index - (len(families) - 1) / 2) * width for g, _ in chosen],
            width=width,
            fontsize=6,
            rotation=90,
            legend=family.label,
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
    save_figure(made, path)


# --- entry point --------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Command-line options."""
    config = cli.parse(
        __doc__,
        "500 commands per round",
        [
            cli.Opt("--commands", 3000, "timed commands per variant and round", 500, 1),
            cli.Opt("--warmup", 200, "untimed commands before each", least=0),
            cli.Opt("--rounds", 3, "interleaved rounds per variant", least=1),
            cli.Opt(
                "--writers",
                "4,16,64",
                "writer threads of the concurrent runs (1 is always measured)",
                least=2,
                ints=True,
            ),
        ],
        argv,
        check=lambda a: None if a.writers else "--writers must name at least one count",
    )
    config.writers = tuple(sorted(set(config.writers)))
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table and save the JSON and the chart."""
    config = parse_args(argv)
    session = cli.Session.begin("commands", config.results, 130)
    settings = Settings.load()
    machine = machine_info(settings, services=("postgres",))
    session.console.log(
        f"PostgreSQL {machine['postgres']['server_version']} at {settings.postgres_address()}, "
        f"{machine['nproc']} CPUs, Python {machine['python']}; "
        f"{config.commands} commands x {config.rounds} rounds per variant "
        f"(+{config.warmup} warm-up each), writers 1 and {', '.join(map(str, config.writers))}"
    )
    outcome = measure(settings, config, session.stamp, session)
    pairs = [
        (f"{a}-{suffix(n)}", f"{b}-{suffix(n)}")
        for a, b in RATIO_PAIRS
        for n in (1, *config.writers)
    ]
    found = ratios([outcome.measurements[v.key] for v in outcome.variants], pairs)
    print_tables(session, outcome, found, config)
    variants = []
    for v in outcome.variants:
        m = outcome.measurements[v.key]
        variants.append(
            {
                **{f"family_{k}": value for k, value in asdict(v.family).items()},
                "key": v.key,
                "family": v.family.key,
                "label": v.family.label,
                "writers": v.writers,
                "events_per_round": v.calls(config.commands, MIN_PER_WRITER)
                * v.family.rows_per_call,
                "rounds": [
                    {**r, "events_per_second": x} for r, x in zip(m.rounds, m.values, strict=True)
                ],
                **m.summary(),
                "events_stored": outcome.stored.get(v.key),
            }
        )
    session.save(
        {
            **vars(config),
            "min_commands_per_writer": MIN_PER_WRITER,
            "pool_size": "one connection per writer, for every side",
            "cqrskit_command": "RegisterItem -> InventoryItem.Registered(sku, name, quantity)",
            "baseline_event": "PlainItem.Registered(sku, name, quantity), app.save per aggregate",
            "raw_row": f"one row of {len(RAW_STATE % 'sku-r1-w0-17')} bytes of state into a "
            "table like eventsourcing's events table; INSERT then COMMIT",
            "raw_batch": f"{RAW_BATCH_ROWS} such rows per INSERT (unnest) and COMMIT; "
            "20x the rows of the other variants per batch",
            "group_commits": "cqrskit rounds: transactions and appends of the recorder's "
            "group commit during the timed batch (PostgresEventRecorder.group_commits)",
            "clock": "time.perf_counter",
        },
        machine,
        lambda path: save_chart(path, outcome, found, config, machine=machine, stamp=session.stamp),
        variants=variants,
        ratios=[asdict(r) for r in found],
        cqrskit_time_split=outcome.split,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
