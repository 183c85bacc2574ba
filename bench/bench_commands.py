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
from dataclasses import asdict, dataclass
from pathlib import Path
from queue import SimpleQueue
from typing import Any
from uuid import UUID, uuid4

import psycopg
from _kit import cli, report
from _kit.measure import BenchmarkError, Measurement, Ratio, StepTimer, interleaved, ratios, split
from _kit.product import PostgresEventRecorder, Runtime, pg_backend
from _kit.stack import eventsourcing_env, fresh_schemas
from eventsourcing.application import Application as PlainApplication
from eventsourcing.domain import Aggregate as PlainAggregate
from eventsourcing.domain import event as plain_event
from psycopg.sql import SQL, Identifier

from cqrskit import CommandBus, Settings
from examples.shop import RegisterItem, ShopApp, handlers

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
NOTES = {
    "min_commands_per_writer": MIN_PER_WRITER,
    "pool_size": "one connection per writer, for every side",
    "cqrskit_command": "RegisterItem -> InventoryItem.Registered(sku, name, quantity)",
    "baseline_event": "PlainItem.Registered(sku, name, quantity), app.save per aggregate",
    "raw_row": f"one row of {len(RAW_STATE % 'sku-r1-w0-17')} bytes of state into a table like "
    "eventsourcing's events table; INSERT then COMMIT",
    "raw_batch": f"{RAW_BATCH_ROWS} such rows per INSERT (unnest) and COMMIT; 20x the rows of "
    "the other variants per batch",
    "group_commits": "cqrskit rounds: transactions and appends of the recorder's group commit "
    "during the timed batch (PostgresEventRecorder.group_commits)",
    "clock": "time.perf_counter",
}


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
    """One way of appending: which side (cqrskit, eventsourcing, raw), and how."""

    key: str
    label: str
    side: str
    idempotency_key: bool = False
    #: eventsourcing only: its database functions (POSTGRES_ENABLE_DB_FUNCTIONS=y).
    db_functions: bool = False
    #: raw only: rows per INSERT and COMMIT.
    rows_per_call: int = 1
    #: Measured with at most this many writers (the others are measured with all).
    max_writers: int | None = None


#: In the order the rounds run them, which interleaves the sides; with their colours.
FAMILIES = [
    (Family("cqrskit", "cqrskit", "cqrskit"), "#1f77b4"),
    (Family("eventsourcing", "eventsourcing", "eventsourcing"), "#9e9e9e"),
    (Family("raw", "raw psycopg INSERT+COMMIT", "raw"), "#2ca02c"),
    (Family("cqrskit-key", "cqrskit + idempotency key", "cqrskit", True, max_writers=4), "#ff7f0e"),
    (Family("eventsourcing-fn", "eventsourcing, db functions", "eventsourcing",
            db_functions=True), "#cfcfcf"),
    (Family("raw-batch", f"raw psycopg, {RAW_BATCH_ROWS} rows per COMMIT", "raw",
            rows_per_call=RAW_BATCH_ROWS, max_writers=4), "#98df8a"),
]  # fmt: skip
COLOURS = {f.key: colour for f, colour in FAMILIES}
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
        for family, _ in FAMILIES
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
    """The shop in ``schema`` (initialised as 'cqrskit db init' does) and a sender of
    RegisterItem commands."""
    shop = settings.model_copy(update={"postgres_schema": schema, "postgres_pool_size": pool_size})
    Runtime(shop).init_schema(ShopApp)
    app = ShopApp(shop)
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


def run_round(
    run: cli.Run, v: Variant, schema: str, round_no: int, stored: dict[str, int | None]
) -> tuple[float, dict[str, Any], str]:
    """Open ``v``, warm it up, time one batch, check what it stored, close it.

    Its rate, the round's other figures, and a note for the log.
    """
    opened = open_variant(run.settings, v, schema)
    try:
        rows = v.family.rows_per_call
        warm = v.calls(run.config.warmup, 1)
        timed = v.calls(run.config.commands, MIN_PER_WRITER)
        run_batch(opened.send, v.writers, warm, f"r{round_no}-warm")
        commits_before = opened.group_commits()
        seconds = run_batch(opened.send, v.writers, timed, f"r{round_no}")
        commits_after = opened.group_commits()
        extra: dict[str, Any] = {"seconds": seconds}
        if commits_before is not None and commits_after is not None:
            extra["transactions"] = commits_after[0] - commits_before[0]
            extra["appends"] = commits_after[1] - commits_before[1]
        found = stored[v.key] = opened.stored()
        expected = round_no * (warm + timed) * rows
        if found != expected:
            raise BenchmarkError(f"{v.key}: {found} events stored, expected {expected}")
        return timed * rows / seconds, extra, f"{v.writers:>2} writer(s)"
    finally:
        opened.close()


def measure_split(run: cli.Run, schema: str, v: Variant) -> dict[str, Any]:
    """One untimed sequential cqrskit batch with its steps timed (a microsecond per call)."""
    opened = open_variant(run.settings, v, schema)
    app, commands = opened.app, run.config.commands
    assert app is not None
    try:
        run_batch(opened.send, 1, run.config.warmup, "split-warm")
        timer = StepTimer()
        recorder, mapper = app.recorder, app.mapper
        recorder.insert_events = timer.wrap("insert_events", recorder.insert_events)  # type: ignore[method-assign]
        mapper.to_stored_event = timer.wrap("to_stored_event", mapper.to_stored_event)  # type: ignore[method-assign]
        seconds = run_batch(timer.wrap("dispatch", opened.send), 1, commands, "split")
    finally:
        opened.close()
    timer.seconds["other"] = seconds - sum(timer.seconds.values())
    return {
        "seconds": seconds,
        "events": commands,
        "events_per_second": commands / seconds,
        "steps": split(timer.seconds, SPLIT_STEPS, seconds),
        "note": "one sequential batch of cqrskit appends after the rounds; exclusive wall time "
        "of CommandBus.dispatch, the mapper's to_stored_event and the recorder's insert_events",
    }


# --- output -------------------------------------------------------------------


def print_tables(
    run: cli.Run, ms: Sequence[Measurement], found: Sequence[Ratio], split: dict[str, Any]
) -> None:
    """One row per variant: median rate, range, spread and the ratios to the baselines."""
    by_pair = {(r.variant, r.baseline.rsplit("-", 1)[0]): r for r in found}
    writers = {m.key: m.key.rsplit("-", 1)[1] for m in ms}

    def vs(base: str, cell: int = 0) -> Callable[[Measurement], str]:
        return lambda m: (
            report.ratio_cells(by_pair[(m.key, base)])[cell] if (m.key, base) in by_pair else ""
        )

    def per_commit(m: Measurement) -> str:
        found = [r["appends"] / r["transactions"] for r in m.rounds if r.get("transactions")]
        return f"{max(found):.1f}" if found else ""

    columns = report.rate_columns()
    columns[1:1] = [("writers", lambda m: "1" if writers[m.key] == "seq" else writers[m.key][:-1])]
    report.rounds_table(
        run.console,
        f"Appends on PostgreSQL: {run.config.commands} commands timed per round (at least "
        f"{MIN_PER_WRITER} per writer), {run.config.rounds} rounds, one event each",
        ms,
        [
            *columns,
            ("vs eventsourcing", vs("eventsourcing")),
            ("vs raw commit", vs("raw")),
            ("per-round vs raw", vs("raw", 1)),
            ("appends per commit", per_commit),
        ],
    )
    run.console.print(
        "ratio = events/s / the baseline's events/s at the same number of writers; compare "
        "ratios within one run, not absolute figures across runs. Raw batches: rows per second. "
        "appends per commit: cqrskit's group commit, most in a round."
    )
    report.steps_table(
        run.console,
        f"Where a sequential append's time goes ({split['events_per_second']:,.0f} "
        "appends/s with the timers on)",
        split["steps"],
        split["events"],
    )


def save_chart(
    path: Path,
    run: cli.Run,
    variants: Sequence[Variant],
    ms: dict[str, Measurement],
    found: Sequence[Ratio],
) -> None:
    """Grouped bars of median events/s by writers (log scale; whiskers: min and max)."""
    groups = [1, *run.config.writers]
    families = [f for f, _ in FAMILIES if any(v.family == f for v in variants)]
    by_raw = {
        r.variant: r for r in found if r.baseline.startswith("raw-") and "batch" not in r.baseline
    }
    width = 0.8 / len(families)
    made = report.figure(11, 6)
    axes = made.add_subplot()

    def label(m: Measurement) -> str:
        ratio = by_raw.get(m.key)
        return f"{m.median:,.0f}" + (f" ({ratio.ratio_of_medians:.2f}x raw)" if ratio else "")

    for index, family in enumerate(families):
        chosen = [
            (g, v)
            for g, n in enumerate(groups)
            for v in variants
            if v.family == family and v.writers == n
        ]
        report.median_bars(
            axes,
            [ms[v.key] for _, v in chosen],
            [COLOURS[family.key]] * len(chosen),
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
    postgres = run.machine["postgres"]
    axes.set_title(
        "Appends per second, one event per command: cqrskit vs eventsourcing vs raw psycopg\n"
        f"{run.config.commands} timed commands x {run.config.rounds} interleaved rounds, "
        f"PostgreSQL {postgres['server_version']} (fsync {postgres['fsync']}, "
        f"synchronous_commit {postgres['synchronous_commit']}), {run.machine['nproc']} CPUs, "
        f"run {run.stamp}\nbar: median; whiskers: min and max; label: median and ratio to the "
        "raw single-row commit",
        fontsize=9,
    )
    report.save_figure(made, path)


# --- entry point --------------------------------------------------------------

OPTIONS = [
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
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table and save the JSON and the chart.

    Each number of writers in turn: its variants in interleaved rounds; then
    the split. A variant's writer is opened for its turn in a round and
    closed after it (pools of 64 connections for every variant at once would
    pass the server's connection limit); the warm-up batch before each timed
    batch fills the pool and the caches again.
    """
    config = cli.parse(
        __doc__,
        "500 commands per round",
        OPTIONS,
        argv,
        check=lambda a: None if a.writers else "--writers must name at least one count",
    )
    config.writers = tuple(sorted(set(config.writers)))
    run = cli.Run.start("commands", config, 130, ("postgres",))
    run.log(
        f"{config.commands} commands x {config.rounds} rounds per variant (+{config.warmup} "
        f"warm-up each), writers 1 and {', '.join(map(str, config.writers))}"
    )
    variants = variants_for(config.writers)
    schemas = {v.key: f"bench_{run.stamp.lower()}_{v.key.replace('-', '_')}" for v in variants}
    ms = {v.key: Measurement(v.key, v.family.label) for v in variants}
    by_key, stored = {v.key: v for v in variants}, dict[str, int | None]()
    with fresh_schemas(run.settings, *schemas.values()):
        for writers in (1, *config.writers):
            interleaved(
                [ms[v.key] for v in variants if v.writers == writers],
                config.rounds,
                lambda m, n: run_round(run, by_key[m.key], schemas[m.key], n, stored),
                run.console,
            )
        split = measure_split(run, schemas["cqrskit-seq"], by_key["cqrskit-seq"])
    pairs = [
        (f"{a}-{suffix(n)}", f"{b}-{suffix(n)}")
        for a, b in RATIO_PAIRS
        for n in (1, *config.writers)
    ]
    found = ratios(list(ms.values()), pairs)
    print_tables(run, list(ms.values()), found, split)
    run.save(
        NOTES,
        lambda path: save_chart(path, run, variants, ms, found),
        variants=[
            {
                **{f"family_{k}": value for k, value in asdict(v.family).items()},
                "key": v.key,
                "family": v.family.key,
                "label": v.family.label,
                "writers": v.writers,
                "events_per_round": v.calls(config.commands, MIN_PER_WRITER)
                * v.family.rows_per_call,
                **report.variant_rows([ms[v.key]])[0],
                "events_stored": stored.get(v.key),
            }
            for v in variants
        ],
        ratios=[asdict(r) for r in found],
        cqrskit_time_split=split,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
