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
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

from _kit import cli, report
from _kit.machine import ServiceCpu, other_benchmarks
from _kit.measure import (
    RUN_TIMEOUT,
    BenchmarkError,
    Measurement,
    Ratio,
    StepTimer,
    gc_timed,
    interleaved,
    profiled,
)
from _kit.product import (
    Applier,
    ElasticsearchReadModel,
    IndexNames,
    Runtime,
    Topology,
    kafka_backend,
    read_model_for,
)
from _kit.stack import (
    APP_NAME,
    PublishedOrders,
    check_views,
    fresh_schemas,
    order_line,
    partition_ends,
    projection_named,
)
from confluent_kafka import Consumer, TopicPartition
from elasticsearch import Elasticsearch
from rich.markup import escape

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
#: What the timed rebuild wraps, as each replay step (the product's public classes).
WRAPPED = [
    (Applier, "apply", "fold"),
    (ElasticsearchReadModel, "load", "load"),
    (ElasticsearchReadModel, "write", "write"),
    (ElasticsearchReadModel, "swap", "swap"),
    (Elasticsearch, "mget", "mget"),
    (Elasticsearch, "bulk", "bulk"),
    (Elasticsearch, "index", "state"),
]
NOTES = {
    "event": "Order.Placed (one new Order per event, one line), customers repeating",
    "projection": "projections.customers:CustomerOrdersProjection",
    "rebuild_timed": "rebuild(settings, 'shop', CustomerOrdersProjection()) called in the main "
    "thread, from the call to its return: create the v2 index, note the live group's offsets, "
    "replay the store from PostgreSQL, catch up from Kafka, swap the alias, catch up after the "
    "swap. Before it (not timed): read_model_for(...).ensure() makes an empty v1 behind the "
    "alias; the live group <topic_prefix>.projection.customer_orders was committed at the end "
    "of the topic once after publishing (cold variant: a projection subclass whose group "
    "never committed). Fresh index prefix per run.",
    "live_timed": "ProjectionWorker.run in a thread, from the thread's start until "
    "worker.processed (counted after each batch's offsets are committed) == N; fresh index "
    "prefix and a projection subclass with its own name (hence its own consumer group, nothing "
    "committed) per run; includes creating the indices and joining the group; polled every "
    "20 ms",
    "phases": "from the rebuild's own progress reports (first and last report of each phase); "
    "replay steps are exclusive times of Applier.apply, ElasticsearchReadModel.load/write, "
    "Elasticsearch.mget/bulk/index (the progress saved) inside the replay ('read' = the rest "
    "of the replay: read_envelopes' SQL, encode and Envelope.decode, and the loop); wrappers "
    "once per batch",
    "clock": "time.perf_counter",
}
SETTINGS = ["topic_partitions", "projection_batch_size", "rebuild_batch_size"]
SETTINGS += ["projection_retries"]


def expected_views(config: cli.Config) -> dict[str, CustomerOrders]:
    """customer id -> the view, from the orders the fill made."""
    counts: dict[str, int] = defaultdict(int)
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    for i in range(config.events):
        customer, line = f"customer-{i % config.customers}", order_line(i)
        counts[customer] += 1
        amounts[customer] += line.unit_price * line.quantity
    return {
        c: CustomerOrders(customer_id=c, orders_placed=n, amount_ordered=amounts[c])
        for c, n in counts.items()
    }


def commit_at_end(settings: Any, group: str, topic: str) -> int:
    """Commit ``group``'s offsets at the end of every partition; the messages behind them.

    This is where a caught-up live worker of the projection stands: a
    rebuild notes these offsets and catches up from them.
    """
    ends = partition_ends(settings, topic)
    config = {**kafka_backend.base_config(settings), "group.id": group}
    consumer = Consumer({**config, "enable.auto.commit": False})
    try:
        offsets = [TopicPartition(topic, p, high) for p, (_low, high) in ends.items()]
        consumer.commit(offsets=offsets, asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=10)
    finally:
        consumer.close()
    if any(tp.offset != ends[tp.partition][1] for tp in committed):
        raise BenchmarkError(f"could not commit {group} at the end of {topic}: {committed}")
    return sum(high - low for low, high in ends.values())


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


class Bench(PublishedOrders):
    """One run's published store, expected documents, and the runs of both sides."""

    def __init__(self, run: cli.Run) -> None:
        super().__init__(run.settings, run.tag, run.groups)
        self.run, self.config = run, run.config
        self.on_topic = 0
        self.expected: dict[str, CustomerOrders] = {}
        self.document_bytes: list[float] = []
        self.profile: list[dict[str, Any]] | None = None
        self.profile_path: str | None = None

    def setup(self) -> None:
        """Fill the store, publish it, put the live group at the end (none timed)."""
        config, console = self.config, self.run.console
        self.publish(config.events, config.customers, config.fill_chunk, console)
        # The relay also writes watermark messages: at least N, and a few more.
        live = Topology.of(self.settings, APP_NAME).projection_group(CustomerOrdersProjection.name)
        self.groups.append(live)
        self.on_topic = commit_at_end(self.settings, live, self.topic)
        if self.on_topic < self.head:
            raise BenchmarkError(f"{self.on_topic} messages on {self.topic}, expected {self.head}")
        self.expected = expected_views(config)
        gc.collect()
        self.notes["tracked_objects"] = len(gc.get_objects())
        console.log(
            f"filled in {self.notes['fill_seconds_not_timed']:.1f} s, published in "
            f"{self.notes['publish_seconds_not_timed']:.1f} s ({self.on_topic:,} messages with "
            f"the relay's watermarks, not timed); group {live} committed at the end, as a "
            "caught-up live worker leaves it"
        )

    def rebuild(self, tag: str, cold_group: bool) -> dict[str, Any]:
        """One timed ``rebuild`` into fresh indices (an empty v1 made beforehand), checked.

        Phases are read from the rebuild's own progress reports; the replay's
        steps are the exclusive times of the product's public classes it calls
        (once per batch: the wrappers cost nothing measurable).
        """
        settings = self.settings_for(tag)
        projection = CustomerOrdersProjection()
        if cold_group:
            projection = projection_named(CustomerOrdersProjection, f"customer_orders_{tag}")
        topology = Topology.of(settings, APP_NAME)
        self.groups += [topology.projection_group(projection.name)]
        self.groups += [topology.rebuild_group(projection.name)]
        read_model_for(settings, projection).ensure()  # the live model to swap from: not timed
        timer, spans, timeline = StepTimer(), dict[str, list[float]](), []
        clock = time.perf_counter

        def progress(phase: str, done: int, _total: int) -> None:
            now, key = clock(), phase_key(phase)
            spans.setdefault(key, [now, now])[1] = now
            timer.phase = key
            if key == "replay":
                timeline.append((now - started, done))

        services = ServiceCpu()
        with ExitStack() as patches, gc_timed() as pauses:
            for owner, name, key in WRAPPED:
                wrapped = timer.wrap(key, getattr(owner, name))
                patches.enter_context(mock.patch.object(owner, name, wrapped))
            before = services.sample()
            cpu_started, thread_started = time.process_time(), time.thread_time()
            started = clock()
            result = Runtime(settings).rebuild(APP_NAME, projection, progress=progress)
            ended = clock()
            thread_cpu = time.thread_time() - thread_started
            process_cpu = time.process_time() - cpu_started
            service_cpu = ServiceCpu.used(before, services.sample())
        names, name = IndexNames.of(settings), projection.name
        alias, serving = names.alias(name), read_model_for(settings, projection).serving()
        expected = (self.head, 0, names.index(name, 1), names.index(name, 2))
        if (result.replayed, result.failures, result.previous, serving) != expected:
            raise BenchmarkError(f"unexpected rebuild: {result}, serving {serving}")
        views, size = self.views(alias)
        check_views(views, self.expected, f"rebuild of {alias}")
        self.document_bytes.append(size)
        return {
            "seconds": ended - started,
            "events": result.replayed,
            "process_cpu_seconds": process_cpu,
            "thread_cpu_seconds": thread_cpu,
            "service_cpu_seconds": service_cpu,
            "gc_seconds": pauses.seconds,
            "gc_collections": pauses.collections,
            "timeline": timeline,
            "partial": False,
            "phases": phases_of(timer, spans, started, ended),
            "result": asdict(result),
        }

    def live(self, tag: str, events: int | None = None) -> dict[str, Any]:
        """One worker run (a fresh consumer group and indices) until it applied ``events``
        or, partial, until --live-timeout; checked if whole."""
        settings = self.settings_for(tag)
        worker, loop = self.worker(settings, f"customer_orders_{tag}")
        timeout = self.config.live_timeout if events is None else RUN_TIMEOUT
        services = ServiceCpu()
        before = services.sample()
        with gc_timed() as pauses:
            run = loop.until(events or self.head, RUN_TIMEOUT, partial_after=timeout)
        if run.count == 0:
            raise BenchmarkError(f"the worker applied nothing in {timeout:.0f} s")
        if events is None and not run.partial:
            alias = IndexNames.of(settings).alias(worker.projection.name)
            self.check_caught_up(settings, worker.projection, len(self.expected))
            check_views(self.views(alias)[0], self.expected, f"live worker into {alias}")
        return {
            "seconds": run.seconds,
            "events": run.count,
            "process_cpu_seconds": run.process_cpu_seconds,
            "thread_cpu_seconds": run.thread_cpu_seconds,
            "service_cpu_seconds": ServiceCpu.used(before, services.sample()),
            "gc_seconds": pauses.seconds,
            "gc_collections": pauses.collections,
            "timeline": run.timeline,
            "partial": run.partial,
        }

    def warm_up(self) -> None:
        """Each side once on a few events, untimed (imports, connections, ES caches)."""
        warm = min(self.config.warmup, self.head)
        settings, projection = self.settings_for("warmup-rebuild"), CustomerOrdersProjection()
        read_model_for(settings, projection).ensure()
        started = time.perf_counter()
        Runtime(settings).rebuild(APP_NAME, projection, from_position=self.head - warm)
        seconds = time.perf_counter() - started
        live = self.live("warmup_live", warm)
        self.run.console.log(
            f"warm-up done (the last {warm:,} events rebuilt in {seconds:.1f} s; the first "
            f"{live['events']:,} consumed live in {live['seconds']:.1f} s; not timed)"
        )

    def rounds(self) -> list[Measurement]:
        """The timed rounds, alternating the order of the variants."""
        config = self.config
        chosen = [v for v in VARIANTS if config.cold_group or not v[3]]
        kinds = {key: (is_rebuild, cold) for key, _, is_rebuild, cold in chosen}

        def one(m: Measurement, round_no: int) -> tuple[float, dict[str, Any], str]:
            (is_rebuild, cold), others = kinds[m.key], other_benchmarks()
            tag = f"r{round_no}_{m.key}".replace("-", "_")
            run = self.rebuild(tag, cold) if is_rebuild else self.live(tag)
            run["others_running"] = sorted(others | other_benchmarks())
            note = f" PARTIAL: first {run['events']:,} of {self.head:,}" if run["partial"] else ""
            if run["others_running"]:
                others_text = escape(str(run["others_running"]))
                note += f" [yellow](other benchmarks running: {others_text})[/]"
            cpu = 100 * run["process_cpu_seconds"] / run["seconds"]
            note = f"({run['seconds']:.1f} s, process CPU {cpu:.0f}%{note})"
            return run["events"] / run["seconds"], run, note

        measurements = [Measurement(key, label) for key, label, _, _ in chosen]
        interleaved(measurements, config.rounds, one, self.run.console)
        return measurements

    def run_profile(self) -> None:
        """One more rebuild under cProfile, untimed."""
        path = self.run.profile_path()
        topology = Topology.of(self.settings, APP_NAME)
        self.groups.append(topology.rebuild_group(CustomerOrdersProjection.name))
        settings, projection = self.settings_for("profile"), CustomerOrdersProjection()
        read_model_for(settings, projection).ensure()
        wrap, rows = profiled(path, top=30)
        wrap(lambda: Runtime(settings).rebuild(APP_NAME, projection))()
        self.profile, self.profile_path = rows, str(path)
        self.run.console.log(f"profiled rebuild saved to {path}")


def ratios_of(measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """Every rebuild variant over the live worker.

    If a live run was cut short (--live-timeout), the ratio compares the
    rates over the same first events: the rebuild's time to reach them is
    read from its progress curve.
    """
    by_key = {m.key: m for m in measurements}
    base = by_key[BASELINE]
    like = min(r["events"] for r in base.rounds) if any(r["partial"] for r in base.rounds) else None
    found = []
    for m in (m for m in measurements if m.key != BASELINE):
        if like is None:
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
                "like_for_like_events": like,
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
    if len(timeline) <= TIMELINE_POINTS:
        return list(timeline)
    return [*timeline[::step], *timeline[-1:]]


# --- output -------------------------------------------------------------------------------


def print_tables(bench: Bench, ms: Sequence[Measurement], found: Sequence[dict[str, Any]]) -> None:
    """The rounds table, the rebuild's phases, and the profile if measured."""
    console = bench.run.console
    ratios = [
        Ratio(r["variant"], BASELINE, r["ratio_of_medians"], r["round_ratios"]) for r in found
    ]

    def cpu(header: str, service: str) -> report.Column:
        def cell(m: Measurement) -> str:
            known = [
                100 * r["service_cpu_seconds"][service] / r["seconds"]
                for r in m.rounds
                if r["service_cpu_seconds"].get(service) is not None
            ]
            return f"{statistics.median(known):.0f}%" if known else "-"

        return header, cell

    def events(m: Measurement) -> str:
        partial = " (partial)" if any(r["partial"] for r in m.rounds) else ""
        return ", ".join(f"{e:,}" for e in sorted({r["events"] for r in m.rounds})) + partial

    report.rounds_table(
        console,
        f"Read-model rebuild vs live consumption: {bench.head:,} Order.Placed events, "
        f"{len(bench.expected):,} customers, {bench.config.rounds} interleaved round(s)",
        ms,
        [
            *report.rate_columns()[:3],
            ("median wall s", lambda m: f"{m.median_of('seconds'):.1f}"),
            ("events", events),
            ("bench CPU", report.share("process_cpu_seconds")),
            ("GC", report.share("gc_seconds", 1)),
            cpu("ES CPU", "elasticsearch"),
            cpu("PG CPU", "postgres"),
            *report.ratio_columns(ratios, "vs live (median)"),
        ],
    )
    like = [r for r in found if r["like_for_like_events"]]
    console.print(
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
    for m in (m for m in ms if m.key != BASELINE):
        title = f"Where the time of '{m.label}' goes (median of rounds)"
        report.steps_table(console, title, phase_steps(m), bench.head)
    if bench.profile:
        report.profile_table(console, "cProfile of one rebuild", bench.profile)


def save_chart(
    path: Path, bench: Bench, ms: Sequence[Measurement], found: Sequence[dict[str, Any]]
) -> None:
    """Bars of median events/s, the rebuild's time split, and the progress curves."""
    by_variant = {r["variant"]: r for r in found}
    made = report.figure(11, 11)
    grid = made.add_gridspec(3, 1, height_ratios=[3, 1.3, 2.4])
    axes, curves = made.add_subplot(grid[0]), made.add_subplot(grid[2])

    def label(m: Measurement) -> str:
        ratio = by_variant.get(m.key)
        text = f"{m.median:,.0f}/s, {m.median_of('seconds'):,.0f} s\n" + (
            f"{ratio['ratio_of_medians']:.2f}x live" if ratio else "baseline"
        )
        partial = [r["events"] for r in m.rounds if r["partial"]]
        return text + (f"\n(first {min(partial):,} events)" if partial else "")

    title = (
        "Read-model rebuild vs live consumption, CustomerOrdersProjection\n"
        f"{bench.head:,} events, {len(bench.expected):,} customers x {bench.config.rounds} "
        f"interleaved round(s), {bench.run.versions()}, run {bench.run.stamp}\n"
        "bar: median; whiskers: min and max; label: median, wall time, ratio to live"
    )
    report.rounds_bars(axes, ms, [COLOURS[m.key] for m in ms], label, title)
    report.split_bar(
        made.add_subplot(grid[1]),
        phase_steps(ms[0]),
        "seconds (median of the rebuild's rounds)",
        "Where the rebuild's wall time goes",
        columns=4,
    )
    for m in ms:
        for n, run in enumerate(m.rounds):
            points, colour, alpha = thinned(run["timeline"]), COLOURS[m.key], 0.45 if n else 1.0
            xs, ys = [0.0] + [t for t, _ in points], [0] + [e for _, e in points]
            curves.plot(xs, ys, color=colour, alpha=alpha, label=None if n else m.label)
            if points and run["seconds"] > points[-1][0] + 0.05:
                # A rebuild's catch-up and swap come after its replay's last report.
                xs, ys = [points[-1][0], run["seconds"]], [points[-1][1], run["events"]]
                curves.plot(xs, ys, color=colour, alpha=alpha, linestyle=":")
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
    report.save_figure(made, path)


# --- entry point --------------------------------------------------------------------------

OPTIONS = [
    cli.Opt("--events", 1_000_000, "events in the store (each run applies all)", 100_000, 1),
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
        "also a rebuild whose live consumer group never committed (catches up the whole topic)",
    ),
    cli.Opt("--profile", False, "one more rebuild under cProfile (saves .prof)"),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and save the JSON and the chart."""
    config = cli.parse(
        __doc__,
        "100000 events and 3 rounds instead of 1000000 and 1",
        OPTIONS,
        argv,
        check=lambda a: "--warmup must be below --events" if a.warmup >= a.events else None,
    )
    run = cli.Run.start("rebuild", config, 150, own=["schema", "topics", "indices"])
    settings = run.settings
    run.log(
        f"{config.events:,} events, {config.customers:,} customers, {config.rounds} round(s); "
        f"batches of {settings.projection_batch_size} (rebuild: {settings.rebuild_batch_size}), "
        f"{settings.topic_partitions} partitions"
    )
    bench = Bench(run)
    with run.cleaning(indices=True, topics=True), fresh_schemas(settings):
        bench.setup()
        if config.warmup:
            bench.warm_up()
        ms = bench.rounds()
        if config.profile:
            bench.run_profile()
    found = ratios_of(ms)
    print_tables(bench, ms, found)
    kinds = {key: (is_rebuild, cold) for key, _label, is_rebuild, cold in VARIANTS}
    variants = [
        {
            "key": m.key,
            "label": m.label,
            "side": "rebuild" if kinds[m.key][0] else "live",
            "cold_group": kinds[m.key][1],
            "rounds": [
                {**r, "events_per_second": v, "timeline": thinned(r["timeline"])}
                for r, v in zip(m.rounds, m.values, strict=True)
            ],
            **m.summary(),
            "median_seconds": m.median_of("seconds"),
            "partial": any(r["partial"] for r in m.rounds),
            "median_phases": median_phases(m) if kinds[m.key][0] else None,
        }
        for m in ms
    ]
    run.save(
        {
            "event": NOTES["event"],
            "projection": NOTES["projection"],
            "topic": bench.topic,
            "messages_on_topic": bench.on_topic,
            **{k: getattr(settings, k) for k in SETTINGS},
            "document_bytes_mean_after_rebuild": statistics.fmean(bench.document_bytes),
            **bench.notes,
            **NOTES,
        },
        lambda path: save_chart(path, bench, ms, found),
        variants=variants,
        ratios=found,
        rebuild_profile_top=bench.profile,
        rebuild_profile_file=bench.profile_path,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
