"""Commands per second: cqrskit's command bus against plain eventsourcing.

Both sides write to the real local PostgreSQL, each variant in a fresh
schema that is dropped at the end. Every command appends exactly one event:

- cqrskit: ``CommandBus.dispatch(RegisterItem(...))`` on the example shop,
  which creates a new ``InventoryItem`` (event ``Registered``: sku, name,
  quantity), with and without an idempotency key per command;
- baseline: eventsourcing's own ``Application`` with its default PostgreSQL
  persistence, saving a plain ``Aggregate`` whose ``Registered`` event has
  the same fields, one event per ``save``.

Each variant runs sequentially (one thread) and with several writer threads,
each on its own aggregates. Rounds interleave the variants, so noise on this
shared machine hits every variant alike; compare the ratios of one run, not
absolute figures across runs. Run from the repository root::

    .venv/bin/python bench/bench_commands.py [--quick] [--commands N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

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
from cqrskit.backends import postgres as pg_backend

# The example shop lives in examples/, which is not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.shop import RegisterItem, ShopApp, handlers

REPO_ROOT = Path(__file__).resolve().parents[1]

Side = Literal["cqrskit", "baseline"]
#: Sends one command (or saves one aggregate) identified by a unique token.
Send = Callable[[str], None]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ITEM_NAME = "Benchmark item"
ITEM_QUANTITY = 10


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
class Variant:
    """One thing to measure: which side, how many writers, keyed or not."""

    key: str
    label: str
    side: Side
    writers: int
    idempotency_key: bool


@dataclass
class Measurement:
    """A variant's timed rounds and what the store holds afterwards."""

    variant: Variant
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
    """cqrskit's rate over the baseline's, at the same number of writers."""

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
    writers: int
    quick: bool
    results: Path

    @property
    def pool_size(self) -> int:
        """Connections per application: a writer holds at most one at a time."""
        return self.writers


def variants_for(writers: int) -> list[Variant]:
    """The variants, in an order that interleaves cqrskit and the baseline."""
    variants = []
    for count, suffix in ((1, "seq"), (writers, f"{writers}w")):
        variants += [
            Variant(f"cqrskit-{suffix}", "cqrskit", "cqrskit", count, idempotency_key=False),
            Variant(
                f"baseline-{suffix}", "eventsourcing", "baseline", count, idempotency_key=False
            ),
            Variant(
                f"cqrskit-{suffix}-key",
                "cqrskit + idempotency key",
                "cqrskit",
                count,
                idempotency_key=True,
            ),
        ]
    return variants


def baseline_of(variant: Variant, variants: Sequence[Variant]) -> Variant:
    """The baseline variant with the same number of writers."""
    (match,) = [v for v in variants if v.side == "baseline" and v.writers == variant.writers]
    return match


# --- the two sides ------------------------------------------------------------


def open_cqrskit(
    settings: Settings, schema: str, pool_size: int, *, keyed: bool
) -> tuple[ShopApp, Send]:
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

    return app, send


def open_baseline(settings: Settings, schema: str, pool_size: int) -> tuple[BaselineApp, Send]:
    """eventsourcing's Application on its default PostgreSQL persistence in ``schema``."""
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
    }
    app = BaselineApp(env=env)

    def send(token: str) -> None:
        recordings = app.save(PlainItem(sku=token, name=ITEM_NAME, quantity=ITEM_QUANTITY))
        if len(recordings) != 1:
            raise BenchmarkError(f"save {token} recorded {len(recordings)} events")

    return app, send


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


def server_version(settings: Settings) -> dict[str, str]:
    """The PostgreSQL server's short and long version strings."""
    with pg_backend.connect(settings) as conn:
        short = conn.execute("SHOW server_version").fetchone()
        full = conn.execute("SELECT version()").fetchone()
    return {
        "server_version": str(short[0]).split()[0] if short else "?",
        "version": str(full[0]) if full else "?",
    }


# --- machine ------------------------------------------------------------------


def machine_info(settings: Settings) -> dict[str, Any]:
    """What the figures depend on: CPUs, versions, load, commit."""
    cpu_model = "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "postgres": server_version(settings),
        "postgres_address": settings.postgres_address(),
        "packages": {
            name: package_version(name)
            for name in ("cqrskit", "eventsourcing", "psycopg", "pydantic", "orjson")
        },
        "git": git_state(),
        "load_average_at_start": list(os.getloadavg()),
    }


def git_state() -> dict[str, Any]:
    """The commit of the checkout, and whether the tree had local changes."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


# --- the run ------------------------------------------------------------------


def measure(settings: Settings, config: Config, stamp: str, console: Console) -> list[Measurement]:
    """Open every variant in its own schema, then run the interleaved rounds."""
    variants = variants_for(config.writers)
    schemas = {v.key: f"bench_{stamp.lower()}_{v.key.replace('-', '_')}" for v in variants}
    measurements = {v.key: Measurement(v) for v in variants}
    with fresh_schemas(settings, list(schemas.values())), ExitStack() as apps:
        senders: dict[str, Send] = {}
        recorders: dict[str, Callable[[], int | None]] = {}
        for v in variants:
            app: ShopApp | BaselineApp
            if v.side == "cqrskit":
                app, send = open_cqrskit(
                    settings, schemas[v.key], config.pool_size, keyed=v.idempotency_key
                )
            else:
                app, send = open_baseline(settings, schemas[v.key], config.pool_size)
            apps.callback(app.close)
            senders[v.key] = send
            recorders[v.key] = app.recorder.max_notification_id
        for round_no in range(1, config.rounds + 1):
            # Alternate the order so that no variant always runs first or last.
            order = variants if round_no % 2 else list(reversed(variants))
            for v in order:
                send = senders[v.key]
                run_batch(send, v.writers, config.warmup, f"r{round_no}-warm")
                seconds = run_batch(send, v.writers, config.commands, f"r{round_no}")
                rate = config.commands / seconds
                measurements[v.key].seconds.append(seconds)
                measurements[v.key].events_per_second.append(rate)
                console.log(
                    f"round {round_no}/{config.rounds}  {v.label:<26} {v.writers} writer(s) "
                    f"{rate:>7.0f} events/s"
                )
        expected = config.rounds * (config.warmup + config.commands)
        for v in variants:
            stored = recorders[v.key]()
            measurements[v.key].events_stored = stored
            if stored != expected:
                raise BenchmarkError(f"{v.key}: {stored} events stored, expected {expected}")
    return [measurements[v.key] for v in variants]


def ratios_of(measurements: Sequence[Measurement]) -> list[Ratio]:
    """cqrskit over baseline for each cqrskit variant, by number of writers."""
    variants = [m.variant for m in measurements]
    by_key = {m.variant.key: m for m in measurements}
    ratios = []
    for m in measurements:
        if m.variant.side != "cqrskit":
            continue
        base = by_key[baseline_of(m.variant, variants).key]
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
    """One row per variant: median rate, range, spread and the ratio to the baseline."""
    by_variant = {r.variant: r for r in ratios}
    table = Table(
        title=(
            f"Commands on PostgreSQL: {config.commands} timed per round, "
            f"{config.rounds} rounds, one event each"
        )
    )
    table.add_column("variant")
    table.add_column("writers", justify="right")
    table.add_column("median events/s", justify="right")
    table.add_column("min - max", justify="right")
    table.add_column("spread", justify="right")
    table.add_column("vs baseline (median)", justify="right")
    table.add_column("per-round ratios", justify="right")
    for m in measurements:
        ratio = by_variant.get(m.variant.key)
        table.add_row(
            m.variant.label,
            str(m.variant.writers),
            f"{m.median:,.0f}",
            f"{min(m.events_per_second):,.0f} - {max(m.events_per_second):,.0f}",
            f"{m.spread_percent:.0f}%",
            f"{ratio.ratio_of_medians:.2f}x" if ratio else "1.00x (baseline)",
            ", ".join(f"{r:.2f}" for r in ratio.round_ratios) if ratio else "",
        )
    console.print(table)
    console.print(
        "ratio = cqrskit events/s / eventsourcing events/s at the same number of writers; "
        "compare ratios within one run, not absolute figures across runs."
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
            "pool_size": config.pool_size,
            "cqrskit_command": "RegisterItem -> InventoryItem.Registered(sku, name, quantity)",
            "baseline_event": "PlainItem.Registered(sku, name, quantity), app.save per aggregate",
            "clock": "time.perf_counter",
        },
        "machine": {**machine, "load_average_at_end": list(os.getloadavg())},
        "variants": [
            {
                **asdict(m.variant),
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
    path.write_text(json.dumps(document, indent=2) + "\n")


def save_chart(
    path: Path,
    *,
    measurements: Sequence[Measurement],
    ratios: Sequence[Ratio],
    config: Config,
    machine: dict[str, Any],
    stamp: str,
) -> None:
    """Grouped bars of median events/s (whiskers: min and max of the rounds)."""
    series: list[tuple[str, Callable[[Variant], bool], str]] = [
        ("eventsourcing (baseline)", lambda v: v.side == "baseline", "#9e9e9e"),
        ("cqrskit", lambda v: v.side == "cqrskit" and not v.idempotency_key, "#1f77b4"),
        (
            "cqrskit + idempotency key",
            lambda v: v.side == "cqrskit" and v.idempotency_key,
            "#ff7f0e",
        ),
    ]
    groups = [1, config.writers]
    group_labels = ["sequential (1 writer)", f"{config.writers} writers"]
    by_variant = {r.variant: r for r in ratios}
    width = 0.26
    figure = Figure(figsize=(9, 5.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, (label, belongs, colour) in enumerate(series):
        chosen = [
            next(m for m in measurements if belongs(m.variant) and m.variant.writers == writers)
            for writers in groups
        ]
        xs = [g + (index - 1) * width for g in range(len(groups))]
        medians = [m.median for m in chosen]
        errors = [
            [m.median - min(m.events_per_second) for m in chosen],
            [max(m.events_per_second) - m.median for m in chosen],
        ]
        bars = axes.bar(xs, medians, width, yerr=errors, capsize=4, label=label, color=colour)
        for bar, m in zip(bars, chosen, strict=True):
            ratio = by_variant.get(m.variant.key)
            text = f"{m.median:,.0f}" + (f"\n{ratio.ratio_of_medians:.2f}x" if ratio else "")
            axes.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, max(m.events_per_second)),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
    axes.set_xticks(range(len(groups)), group_labels)
    axes.set_ylabel("events per second (median of rounds)")
    axes.set_ylim(top=axes.get_ylim()[1] * 1.15)
    axes.legend(loc="upper left", fontsize=8)
    postgres = machine["postgres"]["server_version"]
    axes.set_title(
        "Commands per second, one event each: cqrskit vs eventsourcing\n"
        f"{config.commands} timed commands x {config.rounds} interleaved rounds, "
        f"PostgreSQL {postgres}, {machine['nproc']} CPUs, run {stamp}\n"
        "bar: median; whiskers: min and max; label: median and ratio to the baseline",
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
    parser.add_argument("--writers", type=int, default=4, help="threads of the concurrent runs")
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR, help="where to save the JSON and the chart"
    )
    args = parser.parse_args(argv)
    commands = args.commands or (500 if args.quick else 3000)
    for name, value in (("commands", commands), ("rounds", args.rounds), ("writers", args.writers)):
        if value < 1:
            parser.error(f"--{name} must be at least 1")
    if args.writers < 2:
        parser.error("--writers must be at least 2 (1 writer is the sequential run)")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return Config(commands, args.warmup, args.rounds, args.writers, args.quick, args.results)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table and save the JSON and the chart."""
    config = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # rich assumes 80 columns when piped; the table needs more
    settings = Settings.load()
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    machine = machine_info(settings)
    console.log(
        f"PostgreSQL {machine['postgres']['server_version']} at {settings.postgres_address()}, "
        f"{machine['nproc']} CPUs, Python {machine['python']}; "
        f"{config.commands} commands x {config.rounds} rounds per variant "
        f"(+{config.warmup} warm-up each)"
    )
    measurements = measure(settings, config, stamp, console)
    ratios = ratios_of(measurements)
    print_table(console, measurements, ratios, config)
    config.results.mkdir(parents=True, exist_ok=True)
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
