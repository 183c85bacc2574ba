"""Read-model rebuild: cqrskit's ``rebuild`` against live consumption from Kafka.

N ``Order.Placed`` events, published to Kafka untimed; in interleaved rounds,
``rebuild(settings, "shop", CustomerOrdersProjection())`` (replay, catch-up,
alias swap; each phase timed) against a ``ProjectionWorker`` of a fresh group
reading the topic from the start (``bench/README.md``, "Rebuilding a read
model"). Run from the repository root::

    .venv/bin/python bench/bench_rebuild.py [--quick] [--events N]
"""

from __future__ import annotations

import bisect
import gc
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

from _kit import cli
from _kit.cli import Config
from _kit.machine import ServiceCpu, machine_info, other_benchmarks
from _kit.measure import (
    GcPauses,
    Measurement,
    Ratio,
    StepTimer,
    gc_timed,
    interleaved,
    profiled,
)
from _kit.product import (
    METADATA_FIELD,
    Applier,
    ElasticsearchReadModel,
    IndexNames,
    Runtime,
    Topology,
    es_backend,
    kafka_backend,
    read_model_for,
)
from _kit.report import (
    figure,
    profile_table,
    rounds_bars,
    save_figure,
    split_bar,
    steps_table,
    table,
)
from _kit.stack import (
    APP_NAME,
    RUN_TIMEOUT,
    clean_up,
    fill_store,
    fresh_schemas,
    order_line,
    partition_ends,
    projection_named,
    publish_all,
    worker_loop,
)
from confluent_kafka import Consumer, TopicPartition
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan
from rich.markup import escape

from cqrskit import Settings
from projections.customers import CustomerOrders, CustomerOrdersProjection

#: Points of each progress curve kept in the JSON.
TIMELINE_POINTS = 400
#: key, label, whether it is a rebuild, whether its live group never committed.
VARIANTS = [
    ("rebuild", "rebuild (replay store + catch-up + swap)", True, False),
    ("rebuild-cold", "rebuild, live group never committed", True, True),
    ("live", "live worker from Kafka (baseline)", False, False),
]
BASELINE = "live"
COLOURS = {"rebuild": "#1f77b4", "rebuild-cold": "#6baed6", "live": "#9e9e9e"}
PHASES = [
    ("start: indices, live offsets, head", "start"),
    ("replay the event store", "replay"),
    ("catch up from Kafka", "catch-up"),
    ("swap the alias (+ state)", "swap"),
    ("catch up after the swap", "after-swap"),
    ("other (state between phases, end)", "other"),
]
REPLAY_STEPS = [
    ("read the store: SQL, encode, Envelope.decode", "replay:read"),
    ("ES mget (request, JSON decode)", "replay:mget"),
    ("documents from _source (pydantic)", "replay:load"),
    ("fold: handlers, guards", "replay:fold"),
    ("document bodies (model_dump)", "replay:write"),
    ("ES bulk (request)", "replay:bulk"),
    ("save progress (ES index, per batch)", "replay:state"),
]


class BenchmarkError(RuntimeError):
    """A run did not produce exactly the expected read model."""


# --- what the read model must hold --------------------------------------------------


def expected_views(config: Config) -> dict[str, tuple[int, Decimal]]:
    """customer id -> (orders placed, amount ordered), from the orders the fill made."""
    counts: dict[str, int] = defaultdict(int)
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    for i in range(config.events):
        customer = f"customer-{i % config.customers}"
        line = order_line(i)
        counts[customer] += 1
        amounts[customer] += line.unit_price * line.quantity
    return {c: (counts[c], amounts[c].normalize()) for c in counts}


def commit_at_end(settings: Settings, group: str, topic: str) -> int:
    """Commit ``group``'s offsets at the end of every partition; the messages behind them.

    This is where a caught-up live worker of the projection stands: a
    rebuild notes these offsets and catches up from them.
    """
    ends = partition_ends(settings, topic)
    consumer = Consumer(
        {**kafka_backend.base_config(settings), "group.id": group, "enable.auto.commit": False}
    )
    try:
        offsets = [TopicPartition(topic, p, high) for p, (_low, high) in ends.items()]
        consumer.commit(offsets=offsets, asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=10)
    finally:
        consumer.close()
    if any(tp.offset != ends[tp.partition][1] for tp in committed):
        raise BenchmarkError(f"could not commit {group} at the end of {topic}: {committed}")
    return sum(high - low for low, high in ends.values())


def es_views(es: Elasticsearch, index: str) -> tuple[dict[str, tuple[int, Decimal]], float]:
    """customer id -> (orders placed, amount ordered) of every live document in ``index``;
    and the mean size of a document's ``_source`` in bytes (JSON as stored)."""
    es.indices.refresh(index=index)
    views: dict[str, tuple[int, Decimal]] = {}
    sizes: list[int] = []
    for hit in scan(es, index=index, size=2000):
        source = dict(hit["_source"])
        sizes.append(len(json.dumps(source, separators=(",", ":"))))
        meta = source.pop(METADATA_FIELD, None)
        if not (meta and meta.get("deleted")):
            view = CustomerOrders.model_validate(source)
            views[hit["_id"]] = (view.orders_placed, view.amount_ordered.normalize())
    return views, statistics.fmean(sizes) if sizes else 0.0


def check_views(
    found: dict[str, tuple[int, Decimal]], expected: dict[str, tuple[int, Decimal]], where: str
) -> None:
    """Raise unless ``found`` holds exactly the expected views."""
    different = [k for k in expected.keys() & found.keys() if expected[k] != found[k]]
    if found.keys() != expected.keys() or different:
        example = f", e.g. {different[0]}: {found[different[0]]}" if different else ""
        raise BenchmarkError(
            f"{where}: {len(expected.keys() - found.keys())} documents missing, "
            f"{len(found.keys() - expected.keys())} extra, {len(different)} different{example}"
        )


# --- the two sides ------------------------------------------------------------------------


def phase_key(phase: str) -> str:
    """The phase a ``rebuild`` progress report names: replay, catch-up or after-swap."""
    if "replay" in phase:
        return "replay"
    return "after-swap" if "after" in phase else "catch-up"


def phases_of(
    timer: StepTimer, spans: dict[str, list[float]], started: float, ended: float
) -> dict[str, float]:
    """Wall seconds per phase (from the progress reports), and per step of the replay."""
    replay = spans.get("replay", [started, started])
    catch_up = spans.get("catch-up", [replay[1], replay[1]])
    after = spans.get("after-swap", [catch_up[1], catch_up[1]])
    steps = {key: timer.seconds.get(key, 0.0) for _label, key in REPLAY_STEPS}
    steps["replay:read"] = replay[1] - replay[0] - sum(steps.values())
    return {
        "start": replay[0] - started,
        "replay": replay[1] - replay[0],
        **steps,
        "between": catch_up[0] - replay[1],
        "catch-up": catch_up[1] - catch_up[0],
        "swap": after[0] - catch_up[1],
        "after-swap": after[1] - after[0],
        "end": ended - after[1],
        "calls": float(sum(timer.calls.values())),
    }


def sampled(
    run: dict[str, Any], services: ServiceCpu, before: dict[str, float | None], pauses: GcPauses
) -> dict[str, Any]:
    """A round's figures with the services' CPU and the collector's pauses during it."""
    return {
        **run,
        "service_cpu_seconds": ServiceCpu.used(before, services.sample()),
        "gc_seconds": pauses.seconds,
        "gc_collections": pauses.collections,
    }


def run_rebuild(settings: Settings, projection: CustomerOrdersProjection) -> dict[str, Any]:
    """One timed ``rebuild`` (an empty v1 made beforehand); its round's figures.

    Phases are read from the rebuild's own progress reports; the replay's
    steps are the exclusive times of the product's public classes it calls
    (once per batch: the wrappers cost nothing measurable).
    """
    read_model_for(settings, projection).ensure()  # the live model to swap from: not timed
    timer, spans, timeline = StepTimer(), {}, []
    clock = time.perf_counter

    def progress(phase: str, done: int, _total: int) -> None:
        now, key = clock(), phase_key(phase)
        spans.setdefault(key, [now, now])[1] = now
        timer.phase = key
        if key == "replay":
            timeline.append((now - started, done))

    services = ServiceCpu()
    with ExitStack() as patches, gc_timed() as pauses:
        for owner, name, key in (
            (Applier, "apply", "fold"),
            (ElasticsearchReadModel, "load", "load"),
            (ElasticsearchReadModel, "write", "write"),
            (ElasticsearchReadModel, "swap", "swap"),
            (Elasticsearch, "mget", "mget"),
            (Elasticsearch, "bulk", "bulk"),
            (Elasticsearch, "index", "state"),
        ):
            patches.enter_context(
                mock.patch.object(owner, name, timer.wrap(key, getattr(owner, name)))
            )
        before = services.sample()
        cpu_started, thread_started = time.process_time(), time.thread_time()
        started = clock()
        result = Runtime(settings).rebuild(APP_NAME, projection, progress=progress)
        ended = clock()
        thread_cpu, process_cpu = (
            time.thread_time() - thread_started,
            time.process_time() - cpu_started,
        )
        run = sampled({}, services, before, pauses)
    return {
        "seconds": ended - started,
        "events": result.replayed,
        "process_cpu_seconds": process_cpu,
        "thread_cpu_seconds": thread_cpu,
        **run,
        "timeline": timeline,
        "partial": False,
        "phases": phases_of(timer, spans, started, ended),
        "result": asdict(result),
    }


def run_live(
    settings: Settings, projection: CustomerOrdersProjection, events: int, timeout: float
) -> dict[str, Any]:
    """One live worker run until it applied ``events`` (or, partial, until ``timeout``)."""
    _worker, loop = worker_loop(settings, projection)
    services = ServiceCpu()
    before = services.sample()
    with gc_timed() as pauses:
        run = loop.until(events, RUN_TIMEOUT, partial_after=timeout)
    if run.count == 0:
        raise BenchmarkError(f"the worker applied nothing in {timeout:.0f} s")
    figures = {
        "seconds": run.seconds,
        "events": run.count,
        "process_cpu_seconds": run.process_cpu_seconds,
        "thread_cpu_seconds": run.thread_cpu_seconds,
    }
    return {
        **sampled(figures, services, before, pauses),
        "timeline": run.timeline,
        "partial": run.partial,
    }


# --- the run ------------------------------------------------------------------------------


@dataclass
class Bench:
    """One run's store, topic, expected documents, and what it creates (to clean up)."""

    settings: Settings
    config: Config
    session: cli.Session
    head: int = 0
    on_topic: int = 0
    expected: dict[str, tuple[int, Decimal]] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    document_bytes: list[float] = field(default_factory=list)
    profile: list[dict[str, Any]] | None = None
    profile_path: str | None = None

    def __post_init__(self) -> None:
        self.es = es_backend.client(self.settings).options(request_timeout=120)
        self.topic = Topology.of(self.settings, APP_NAME).topic("Order")

    def setup(self) -> None:
        """Fill the store, publish it, put the live group at the end (none timed)."""
        config, console, settings = self.config, self.session.console, self.settings
        fill, self.head = fill_store(
            settings, config.events, config.customers, config.fill_chunk, console
        )
        publish = publish_all(settings, self.head)
        # The relay also writes watermark messages: at least N, and a few more.
        live_group = Topology.of(settings, APP_NAME).projection_group(CustomerOrdersProjection.name)
        self.groups.append(live_group)
        self.on_topic = commit_at_end(settings, live_group, self.topic)
        if self.on_topic < self.head:
            raise BenchmarkError(f"{self.on_topic} messages on {self.topic}, expected {self.head}")
        self.expected = expected_views(config)
        gc.collect()
        self.notes = {
            "fill_seconds_not_timed": fill,
            "publish_seconds_not_timed": publish,
            "tracked_objects": len(gc.get_objects()),
        }
        console.log(
            f"filled in {fill:.1f} s, published in {publish:.1f} s ({self.on_topic:,} messages "
            f"with the relay's watermarks, not timed); group {live_group} committed at the end, "
            f"as a caught-up live worker leaves it"
        )

    def settings_for(self, tag: str) -> Settings:
        """Settings with a fresh index prefix for one run (same topics, same store)."""
        return self.settings.model_copy(update={"index_prefix": f"{self.session.tag}-{tag}-"})

    def rebuild(self, tag: str, cold_group: bool) -> dict[str, Any]:
        """One rebuild into fresh indices; checked."""
        settings = self.settings_for(tag)
        projection = (
            projection_named(CustomerOrdersProjection, f"customer_orders_{tag}")
            if cold_group
            else CustomerOrdersProjection()
        )
        group = Topology.of(settings, APP_NAME).projection_group(projection.name)
        self.groups += [group, f"{group}.rebuild"]
        run = run_rebuild(settings, projection)
        alias, _ = (
            IndexNames.of(settings).alias(projection.name),
            IndexNames.of(settings).checkpoints_index,
        )
        serving = read_model_for(settings, projection).serving()
        result = run["result"]
        if (result["replayed"], result["failures"], result["previous"], serving) != (
            self.head,
            0,
            f"{alias}-v1",
            f"{alias}-v2",
        ):
            raise BenchmarkError(f"unexpected rebuild: {result}, serving {serving}")
        views, size = es_views(self.es, alias)
        check_views(views, self.expected, f"rebuild of {alias}")
        self.document_bytes.append(size)
        return run

    def live(self, tag: str, events: int | None = None) -> dict[str, Any]:
        """One worker run with a fresh consumer group and fresh indices; checked if whole."""
        settings = self.settings_for(tag)
        projection = projection_named(CustomerOrdersProjection, f"customer_orders_{tag}")
        self.groups.append(Topology.of(settings, APP_NAME).projection_group(projection.name))
        timeout = self.config.live_timeout if events is None else RUN_TIMEOUT
        run = run_live(settings, projection, events or self.head, timeout)
        if events is None and not run["partial"]:
            alias, checkpoints = (
                IndexNames.of(settings).alias(projection.name),
                IndexNames.of(settings).checkpoints_index,
            )
            self.es.indices.refresh(index=[alias, checkpoints])
            status = Runtime(settings).projection_status(APP_NAME, projection)
            if status.lag != 0 or status.position != self.head:
                raise BenchmarkError(f"{projection.name}: lag {status.lag}, at {status.position}")
            check_views(es_views(self.es, alias)[0], self.expected, f"live worker into {alias}")
        return run

    def warm_up(self) -> None:
        """Each side once on a few events, untimed (imports, connections, ES caches)."""
        warm = min(self.config.warmup, self.head)
        settings, projection = self.settings_for("warmup-rebuild"), CustomerOrdersProjection()
        read_model_for(settings, projection).ensure()
        started = time.perf_counter()
        Runtime(settings).rebuild(APP_NAME, projection, from_position=self.head - warm)
        seconds = time.perf_counter() - started
        live = self.live("warmup_live", warm)
        self.session.console.log(
            f"warm-up done (the last {warm:,} events rebuilt in {seconds:.1f} s; the first "
            f"{live['events']:,} consumed live in {live['seconds']:.1f} s; not timed)"
        )

    def run_rounds(self) -> list[Measurement]:
        """The timed rounds, alternating the order of the variants."""
        config, console = self.config, self.session.console
        chosen = [v for v in VARIANTS if config.cold_group or not v[3]]
        kinds = {key: (is_rebuild, cold) for key, _, is_rebuild, cold in chosen}

        def one(m: Measurement, round_no: int) -> tuple[float, dict[str, Any], str]:
            (is_rebuild, cold), others = kinds[m.key], other_benchmarks()
            tag = f"r{round_no}_{m.key}".replace("-", "_")
            run = self.rebuild(tag, cold) if is_rebuild else self.live(tag)
            run["others_running"] = sorted(others | other_benchmarks())
            note = f" PARTIAL: first {run['events']:,} of {self.head:,}" if run["partial"] else ""
            if run["others_running"]:
                note += (
                    f" [yellow](other benchmarks running: {escape(str(run['others_running']))})[/]"
                )
            cpu = 100 * run["process_cpu_seconds"] / run["seconds"]
            return (
                run["events"] / run["seconds"],
                run,
                f"({run['seconds']:.1f} s, process CPU {cpu:.0f}%{note})",
            )

        measurements = [Measurement(key, label) for key, label, _, _ in chosen]
        interleaved(measurements, config.rounds, one, console)
        return measurements

    def run_profile(self) -> None:
        """One more rebuild under cProfile, untimed."""
        path = self.session.profile_path()
        group = Topology.of(self.settings, APP_NAME).projection_group(CustomerOrdersProjection.name)
        self.groups.append(f"{group}.rebuild")
        settings, projection = self.settings_for("profile"), CustomerOrdersProjection()
        read_model_for(settings, projection).ensure()
        wrap, rows = profiled(path, top=30)
        wrap(lambda: Runtime(settings).rebuild(APP_NAME, projection))()
        self.profile, self.profile_path = rows, str(path)
        self.session.console.log(f"profiled rebuild saved to {path}")


def ratios_of(measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """Every rebuild variant over the live worker.

    If a live run was cut short (--live-timeout), the ratio compares the
    rates over the same first events: the rebuild's time to reach them is
    read from its progress curve.
    """
    by_key = {m.key: m for m in measurements}
    base = by_key[BASELINE]
    found = []
    for m in measurements:
        if m.key == BASELINE:
            continue
        if not any(r["partial"] for r in base.rounds):
            found.append({**asdict(Ratio.of(m, base)), "like_for_like_events": None})
            continue
        per_round = []
        for mine, theirs in zip(m.rounds, base.rounds, strict=True):
            done = [n for _, n in mine["timeline"]]
            at = bisect.bisect_left(done, theirs["events"])
            if at >= len(done):
                raise BenchmarkError("the rebuild's progress curve does not reach the live run's")
            upto = mine["timeline"][at][0]
            per_round.append((theirs["events"] / upto) / (theirs["events"] / theirs["seconds"]))
        found.append(
            {
                "variant": m.key,
                "baseline": BASELINE,
                "ratio_of_medians": statistics.median(per_round),
                "round_ratios": per_round,
                "like_for_like_events": min(r["events"] for r in base.rounds),
            }
        )
    return found


def median_phases(m: Measurement) -> dict[str, float]:
    """Median seconds of each phase and replay step over a rebuild variant's rounds."""
    keys = [k for _, k in PHASES if k != "other"] + [k for _, k in REPLAY_STEPS]
    found = {k: statistics.median(r["phases"].get(k, 0.0) for r in m.rounds) for k in keys}
    found["other"] = statistics.median(
        r["phases"].get("between", 0.0) + r["phases"].get("end", 0.0) for r in m.rounds
    )
    return found


def phase_steps(m: Measurement) -> list[dict[str, Any]]:
    """The rebuild's time split: phases with the replay's steps in place of the replay."""
    phases, total = median_phases(m), m.median_of("seconds") or 1.0
    rows = [(label, key) for label, key in PHASES if key != "replay"]
    rows[1:1] = REPLAY_STEPS
    return [
        {"step": label, "key": key, "seconds": phases[key], "share": phases[key] / total}
        for label, key in rows
    ]


def thinned(timeline: Sequence[tuple[float, int]]) -> list[tuple[float, int]]:
    """At most TIMELINE_POINTS points of a progress curve (the last one kept)."""
    step = max(1, len(timeline) // TIMELINE_POINTS)
    return (
        [*timeline[::step], *timeline[-1:]] if len(timeline) > TIMELINE_POINTS else list(timeline)
    )


# --- output -------------------------------------------------------------------------------


def print_tables(
    session: cli.Session, bench: Bench, ms: Sequence[Measurement], found: Sequence[dict[str, Any]]
) -> None:
    """The rounds table, the rebuild's phases, and the profile if measured."""
    by_variant = {r["variant"]: r for r in found}

    def cpu(m: Measurement, service: str) -> str:
        known = [
            100 * r["service_cpu_seconds"][service] / r["seconds"]
            for r in m.rounds
            if r["service_cpu_seconds"].get(service) is not None
        ]
        return f"{statistics.median(known):.0f}%" if known else "-"

    def share(m: Measurement, name: str) -> float:
        return statistics.median(100 * r[name] / r["seconds"] for r in m.rounds)

    rows = []
    for m in ms:
        ratio = by_variant.get(m.key)
        partial = any(r["partial"] for r in m.rounds)
        rows.append(
            [
                m.label,
                f"{m.median:,.0f}",
                f"{min(m.values):,.0f} - {max(m.values):,.0f}",
                f"{m.median_of('seconds'):.1f}",
                ", ".join(f"{e:,}" for e in sorted({r["events"] for r in m.rounds}))
                + (" (partial)" if partial else ""),
                f"{share(m, 'process_cpu_seconds'):.0f}%",
                f"{share(m, 'gc_seconds'):.1f}%",
                cpu(m, "elasticsearch"),
                cpu(m, "postgres"),
                f"{ratio['ratio_of_medians']:.2f}x" if ratio else "1.00x (baseline)",
                ", ".join(f"{r:.2f}" for r in ratio["round_ratios"]) if ratio else "",
            ]
        )
    table(
        session.console,
        f"Read-model rebuild vs live consumption: {bench.head:,} Order.Placed events, "
        f"{len(bench.expected):,} customers, {bench.config.rounds} interleaved round(s)",
        "variant | median events/s | min - max | median wall s | events | bench CPU | GC | "
        "ES CPU | PG CPU | vs live (median) | per-round ratios",
        rows,
    )
    like = [r for r in found if r["like_for_like_events"]]
    session.console.print(
        "ratio = rebuild events/s / live worker events/s in the same round; compare ratios, not "
        "absolute figures across runs. CPU: % of one core over the run (bench: this process, "
        "every thread; ES, PG: the services' processes, whatever else ran on them). GC: wall "
        "time in the garbage collector's pauses."
        + (
            f" The live runs stopped after --live-timeout, so the ratio compares both over the "
            f"first {like[0]['like_for_like_events']:,} events."
            if like
            else ""
        )
    )
    for m in ms:
        if m.key != BASELINE:
            steps_table(
                session.console,
                f"Where the time of '{m.label}' goes (median of rounds)",
                phase_steps(m),
                bench.head,
            )
    if bench.profile:
        profile_table(session.console, "cProfile of one rebuild", bench.profile)


def save_chart(
    path: Path, bench: Bench, ms: Sequence[Measurement], found: Sequence[dict[str, Any]], title: str
) -> None:
    """Bars of median events/s, the rebuild's time split, and the progress curves."""
    by_variant = {r["variant"]: r for r in found}
    made = figure(11, 11)
    grid = made.add_gridspec(3, 1, height_ratios=[3, 1.3, 2.4])
    axes, curves = made.add_subplot(grid[0]), made.add_subplot(grid[2])

    def label(m: Measurement) -> str:
        ratio = by_variant.get(m.key)
        text = f"{m.median:,.0f}/s, {m.median_of('seconds'):,.0f} s\n" + (
            f"{ratio['ratio_of_medians']:.2f}x live" if ratio else "baseline"
        )
        partial = [r["events"] for r in m.rounds if r["partial"]]
        return text + (f"\n(first {min(partial):,} events)" if partial else "")

    rounds_bars(axes, ms, [COLOURS[m.key] for m in ms], label, title)
    split_bar(
        made.add_subplot(grid[1]),
        phase_steps(ms[0]),
        "seconds (median of the rebuild's rounds)",
        "Where the rebuild's wall time goes",
        columns=4,
    )
    for m in ms:
        for n, run in enumerate(m.rounds):
            points, colour, alpha = thinned(run["timeline"]), COLOURS[m.key], 0.45 if n else 1.0
            curves.plot(
                [0.0] + [t for t, _ in points],
                [0] + [e for _, e in points],
                color=colour,
                alpha=alpha,
                label=None if n else m.label,
            )
            if points and run["seconds"] > points[-1][0] + 0.05:
                # A rebuild's catch-up and swap come after its replay's last report.
                curves.plot(
                    [points[-1][0], run["seconds"]],
                    [points[-1][1], run["events"]],
                    color=colour,
                    alpha=alpha,
                    linestyle=":",
                )
                curves.plot([run["seconds"]], [run["events"]], "o", color=colour, alpha=alpha)
    curves.set_xlabel("seconds since the start of the run")
    curves.set_ylabel("events applied")
    curves.set_title(
        "Progress of every run (rebuild: its replay's progress reports, then dotted to its "
        "end: catch-up and swap; live: events committed)",
        fontsize=9,
    )
    curves.legend(fontsize=8, loc="lower right")
    curves.grid(alpha=0.3)
    save_figure(made, path)


# --- entry point --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Command-line options."""
    return cli.parse(
        __doc__,
        "100000 events and 3 rounds instead of 1000000 and 1",
        [
            cli.Opt(
                "--events", 1_000_000, "events in the store (each run applies all)", 100_000, 1
            ),
            cli.Opt("--customers", 5000, "distinct customers (documents)", least=1),
            cli.Opt("--rounds", 1, "interleaved rounds", 3, 1),
            cli.Opt("--warmup", 5000, "events each side applies untimed first", least=0),
            cli.Opt("--fill-chunk", 2000, "new orders saved per transaction", least=1),
            cli.Opt(
                "--live-timeout",
                600.0,
                "seconds after which a live run stops and reports its rate so far",
                least=1e-9,
            ),
            cli.Opt(
                "--cold-group",
                False,
                "also a rebuild whose live consumer group never "
                "committed (catches up the whole topic)",
            ),
            cli.Opt("--profile", False, "one more rebuild under cProfile (saves .prof)"),
        ],
        argv,
        check=lambda a: "--warmup must be below --events" if a.warmup >= a.events else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and save the JSON and the chart."""
    config = parse_args(argv)
    session = cli.Session.begin("rebuild", config.results, 150)
    tag = session.tag
    settings = Settings.load().model_copy(
        update={
            "postgres_schema": tag.replace("-", "_"),
            "topic_prefix": tag,
            "index_prefix": f"{tag}-",
        }
    )
    machine = machine_info(settings)
    session.console.log(
        f"PostgreSQL {machine['postgres']['server_version']}, Kafka {machine['kafka']['version']}"
        f", Elasticsearch {machine['elasticsearch']['version']}, {machine['nproc']} CPUs, Python "
        f"{machine['python']}; {config.events:,} events, {config.customers:,} customers, "
        f"{config.rounds} round(s); batches of {settings.projection_batch_size} (rebuild: "
        f"{settings.rebuild_batch_size}), {settings.topic_partitions} partitions"
    )
    bench = Bench(settings, config, session)
    try:
        with fresh_schemas(settings):
            bench.setup()
            if config.warmup:
                bench.warm_up()
            ms = bench.run_rounds()
            if config.profile:
                bench.run_profile()
    finally:
        clean_up(settings, session.console, indices=tag, topics=tag, groups=bench.groups)
    found = ratios_of(ms)
    print_tables(session, bench, ms, found)
    title = (
        "Read-model rebuild vs live consumption, CustomerOrdersProjection\n"
        f"{bench.head:,} events, {len(bench.expected):,} customers x {config.rounds} interleaved "
        f"round(s), PostgreSQL {machine['postgres']['server_version']}, Kafka "
        f"{machine['kafka']['version']}, Elasticsearch {machine['elasticsearch']['version']}, "
        f"{machine['nproc']} CPUs, run {session.stamp}\n"
        "bar: median; whiskers: min and max; label: median, wall time, ratio to live"
    )
    variants = []
    kinds = {key: (is_rebuild, cold) for key, _label, is_rebuild, cold in VARIANTS}
    for m in ms:
        is_rebuild, cold = kinds[m.key]
        variants.append(
            {
                "key": m.key,
                "label": m.label,
                "side": "rebuild" if is_rebuild else "live",
                "cold_group": cold,
                "rounds": [
                    {**r, "events_per_second": v, "timeline": thinned(r["timeline"])}
                    for r, v in zip(m.rounds, m.values, strict=True)
                ],
                **m.summary(),
                "median_seconds": m.median_of("seconds"),
                "partial": any(r["partial"] for r in m.rounds),
                "median_phases": median_phases(m) if is_rebuild else None,
            }
        )
    session.save(
        {
            **vars(config),
            "event": "Order.Placed (one new Order per event, one line), customers repeating",
            "projection": "projections.customers:CustomerOrdersProjection",
            "topic": bench.topic,
            "messages_on_topic": bench.on_topic,
            "topic_partitions": settings.topic_partitions,
            "projection_batch_size": settings.projection_batch_size,
            "rebuild_batch_size": settings.rebuild_batch_size,
            "projection_retries": settings.projection_retries,
            "document_bytes_mean_after_rebuild": statistics.fmean(bench.document_bytes),
            **bench.notes,
            "rebuild_timed": "rebuild(settings, 'shop', CustomerOrdersProjection()) called in "
            "the main thread, from the call to its return: create the v2 index, note the live "
            "group's offsets, replay the store from PostgreSQL, catch up from Kafka, swap the "
            "alias, catch up after the swap. Before it (not timed): read_model_for(...).ensure() "
            "makes an empty v1 behind the alias; the live group "
            "<topic_prefix>.projection.customer_orders was committed at the end of the topic "
            "once after publishing (cold variant: a projection subclass whose group never "
            "committed). Fresh index prefix per run.",
            "live_timed": "ProjectionWorker.run in a thread, from the thread's start until "
            "worker.processed (counted after each batch's offsets are committed) == N; fresh "
            "index prefix and a projection subclass with its own name (hence its own consumer "
            "group, nothing committed) per run; includes creating the indices and joining the "
            "group; polled every 20 ms",
            "phases": "from the rebuild's own progress reports (first and last report of each "
            "phase); replay steps are exclusive times of Applier.apply, "
            "ElasticsearchReadModel.load/write, Elasticsearch.mget/bulk/index (the progress "
            "saved) inside the replay ('read' = the rest of the replay: read_envelopes' SQL, "
            "encode and Envelope.decode, and the loop); wrappers once per batch",
            "clock": "time.perf_counter",
        },
        machine,
        lambda path: save_chart(path, bench, ms, found, title),
        variants=variants,
        ratios=found,
        rebuild_profile_top=bench.profile,
        rebuild_profile_file=bench.profile_path,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
