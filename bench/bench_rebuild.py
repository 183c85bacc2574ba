"""Read-model rebuild: cqrskit's ``rebuild`` against live consumption from Kafka.

One run pre-fills a fresh PostgreSQL schema with N ``Order.Placed`` events
(customers repeating), publishes them all to Kafka with an in-process
``OutboxRelay`` (none of it timed), then measures, in interleaved rounds:

- rebuild: ``rebuild(settings, "shop", CustomerOrdersProjection())`` in this
  process, with the live read model (an empty v1 behind the alias) in place
  and the live consumer group committed at the end of the topic, as when the
  live workers are caught up: replay of the whole event store from
  PostgreSQL into a new index, catch-up from Kafka, alias swap, catch-up
  after the swap; wall time, events/s, and the time of each phase;
- live consumption (baseline): a ``ProjectionWorker`` for the same projection
  under another name (hence a fresh consumer group, nothing committed)
  and a fresh index prefix, reading the pre-filled topic from the start in a
  thread of this process, until it has applied and committed all N events.

Compare the ratio of one run, not absolute figures across runs: this machine
is shared and noisy. Run from the repository root::

    .venv/bin/python bench/bench_rebuild.py [--quick] [--events N]
"""

from __future__ import annotations

import argparse
import bisect
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from unittest import mock

from _common import fill_orders, fresh_schema, machine_info, order_line
from confluent_kafka import Consumer, TopicPartition
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cqrskit import Settings
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.eventstore import store_head
from cqrskit.projections import (
    METADATA_FIELD,
    Applier,
    ElasticsearchReadModel,
    ProjectionWorker,
    RebuildResult,
    consumer_group,
    index_names,
    projection_status,
    read_model_for,
    rebuild,
)
from cqrskit.projections import _rebuild as rebuild_module
from cqrskit.relay import OutboxRelay, read_status, topic_for

# The example shop and the projections live outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from projections.customers import CustomerOrders, CustomerOrdersProjection

RESULTS_DIR = Path(__file__).resolve().parent / "results"

APP_NAME = "shop"
#: How often the main thread looks at the live worker's progress.
POLL_SECONDS = 0.02
#: Give up on a rebuild (or the untimed publishing) after this long.
RUN_TIMEOUT = 3600.0
#: Points of each progress curve kept in the JSON.
TIMELINE_POINTS = 400

Side = Literal["rebuild", "live"]


class BenchmarkError(RuntimeError):
    """A run did not produce exactly the expected read model."""


@dataclass(frozen=True)
class Variant:
    """One way of building the read model from nothing."""

    key: str
    label: str
    side: Side
    #: rebuild only: the live consumer group has committed nothing, so the
    #: catch-up reads the whole topic again (every event a no-op by then).
    cold_group: bool = False


REBUILD = Variant("rebuild", "rebuild (replay store + catch-up + swap)", "rebuild")
REBUILD_COLD = Variant(
    "rebuild-cold", "rebuild, live group never committed", "rebuild", cold_group=True
)
LIVE = Variant("live", "live worker from Kafka (baseline)", "live")
BASELINE = LIVE.key


@dataclass
class Run:
    """One timed run of one variant."""

    seconds: float
    #: Events the run applied in ``seconds``: N, or fewer if a live run was cut short.
    events: int
    process_cpu_seconds: float
    #: CPU of the thread that does the work (rebuild: the main thread; live: the worker's).
    thread_cpu_seconds: float
    #: CPU seconds of the services during the run (None where unknown).
    service_cpu_seconds: dict[str, float | None] = field(default_factory=dict)
    #: (seconds since the start, events applied): the progress curve.
    timeline: list[tuple[float, int]] = field(default_factory=list)
    #: True if a live run hit --live-timeout before applying all N events.
    partial: bool = False
    #: rebuild only: wall seconds per phase and per step of the replay.
    phases: dict[str, float] = field(default_factory=dict)
    #: rebuild only: what rebuild() returned.
    result: dict[str, Any] | None = None
    #: Other benchmark scripts seen running at the start or the end of the run.
    others_running: list[str] = field(default_factory=list)
    #: Wall seconds this process spent in the cyclic garbage collector, and its
    #: collections per generation, during the run.
    gc_seconds: float = 0.0
    gc_collections: list[int] = field(default_factory=lambda: [0, 0, 0])

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    def seconds_to(self, events: int) -> float | None:
        """Seconds from the start until ``events`` were applied (from the progress curve)."""
        done = [n for _, n in self.timeline]
        at = bisect.bisect_left(done, events)
        return self.timeline[at][0] if at < len(self.timeline) else None


@dataclass
class Measurement:
    """A variant's timed rounds."""

    variant: Variant
    runs: list[Run] = field(default_factory=list)

    @property
    def events_per_second(self) -> list[float]:
        return [r.events_per_second for r in self.runs]

    @property
    def median(self) -> float:
        """Median events per second over the rounds."""
        return statistics.median(self.events_per_second)

    @property
    def median_seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def spread_percent(self) -> float:
        """(max - min) / median, in percent: how noisy the rounds were."""
        rates = self.events_per_second
        return 100.0 * (max(rates) - min(rates)) / self.median

    @property
    def partial(self) -> bool:
        return any(r.partial for r in self.runs)


@dataclass(frozen=True)
class Ratio:
    """A variant's rate over the live worker's."""

    variant: str
    baseline: str
    ratio_of_medians: float
    round_ratios: list[float]
    #: If the live runs were cut short: both rates over the same first events only.
    like_for_like_events: int | None = None


@dataclass(frozen=True)
class Config:
    """What one run measures."""

    events: int
    customers: int
    rounds: int
    warmup: int
    fill_chunk: int
    live_timeout: float
    cold_group: bool
    quick: bool
    profile: bool
    results: Path


# --- the event store, the topic, and what the read model must hold -------------------


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


def publish_all(settings: Settings, head: int) -> float:
    """Publish the whole store with an in-process relay, then stop it; the seconds."""
    relay = OutboxRelay(settings, APP_NAME, "bench")
    errors: list[BaseException] = []

    def target() -> None:
        try:
            relay.run()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=target, name="relay", daemon=True)
    started = time.perf_counter()
    thread.start()
    try:
        while (relay.position or 0) < head:
            if errors or not thread.is_alive():
                raise BenchmarkError(f"the relay stopped early: {errors!r}")
            if time.perf_counter() - started > RUN_TIMEOUT:
                raise BenchmarkError(f"the relay did not reach {head} in {RUN_TIMEOUT} s")
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
    finally:
        relay.stop()
        thread.join(timeout=120)
    if thread.is_alive() or errors:
        raise BenchmarkError(f"the relay did not stop cleanly: {errors!r}")
    if read_status(settings, APP_NAME, "bench").position < head:
        raise BenchmarkError("the relay did not record the head")
    return seconds


def partition_ends(settings: Settings, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (low, high) watermark of ``topic``."""
    consumer = Consumer({**kafka_backend.base_config(settings), "group.id": "bench-rebuild-ends"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in sorted(metadata.partitions)
        }
    finally:
        consumer.close()


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
        if meta and meta.get("deleted"):
            continue
        view = CustomerOrders.model_validate(source)
        views[hit["_id"]] = (view.orders_placed, view.amount_ordered.normalize())
    return views, statistics.fmean(sizes) if sizes else 0.0


def check_views(
    found: dict[str, tuple[int, Decimal]], expected: dict[str, tuple[int, Decimal]], where: str
) -> None:
    """Raise unless ``found`` holds exactly the expected views."""
    missing = expected.keys() - found.keys()
    extra = found.keys() - expected.keys()
    different = [k for k in expected.keys() & found.keys() if expected[k] != found[k]]
    if missing or extra or different:
        example = different[0] if different else None
        raise BenchmarkError(
            f"{where}: {len(missing)} documents missing, {len(extra)} extra, "
            f"{len(different)} different"
            + (f", e.g. {example}: {found[example]} != {expected[example]}" if example else "")
        )


def projection_named(name: str) -> CustomerOrdersProjection:
    """CustomerOrdersProjection under another name, hence another consumer group.

    A projection's consumer group is ``<topic prefix>.projection.<name>``, and
    the topic prefix must stay the one of the pre-filled topic; a subclass
    with its own ``name`` gets a group that has never committed an offset.
    """
    cls = type(f"Bench_{name}", (CustomerOrdersProjection,), {"name": name})
    projection = cls()
    assert isinstance(projection, CustomerOrdersProjection)
    return projection


# --- CPU of this process's threads and of the services ------------------------------


def thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds used so far by ``thread`` (Linux: its pthread CPU clock)."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


class ServiceCpu:
    """CPU seconds used by Elasticsearch, Kafka and PostgreSQL, from /proc (Linux only).

    PostgreSQL: every ``postgres`` process, plus the CPU of the backends that
    exited (the postmaster's reaped children), so short connections count too.
    """

    TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self) -> None:
        self.es: int | None = None
        self.kafka: int | None = None
        self.postmaster: int | None = None
        for pid, comm, cmdline in self._processes():
            if b"org.elasticsearch.bootstrap.Elasticsearch" in cmdline:
                self.es = pid
            elif b"kafka.Kafka" in cmdline:
                self.kafka = pid
            elif comm == "postgres" and b"postgres: " not in cmdline:
                self.postmaster = pid

    @staticmethod
    def _processes() -> Iterator[tuple[int, str, bytes]]:
        proc = Path("/proc")
        if not proc.is_dir():
            return
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                comm = (entry / "comm").read_text().strip()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            yield int(entry.name), comm, cmdline

    def _stat(self, pid: int) -> list[str] | None:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return raw.rpartition(")")[2].split()  # fields from 3 (state) on

    def _own(self, pid: int | None) -> float | None:
        fields = self._stat(pid) if pid is not None else None
        if fields is None:
            return None
        return (int(fields[11]) + int(fields[12])) / self.TICKS  # utime, stime

    def _postgres(self) -> float | None:
        if self.postmaster is None:
            return None
        fields = self._stat(self.postmaster)
        if fields is None:
            return None
        total = (int(fields[13]) + int(fields[14])) / self.TICKS  # cutime, cstime
        for pid, comm, _ in self._processes():
            if comm == "postgres":
                total += self._own(pid) or 0.0
        return total

    def sample(self) -> dict[str, float | None]:
        return {
            "elasticsearch": self._own(self.es),
            "kafka": self._own(self.kafka),
            "postgres": self._postgres(),
        }

    @staticmethod
    def used(
        before: dict[str, float | None], after: dict[str, float | None]
    ) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, start in before.items():
            end = after.get(name)
            out[name] = None if start is None or end is None else end - start
        return out


class GcTimer:
    """Wall time of the cyclic garbage collector's pauses (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started: float | None = None

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1
            self._started = None

    def snapshot(self) -> tuple[float, list[int]]:
        return self.seconds, list(self.collections)

    def since(self, snapshot: tuple[float, list[int]]) -> tuple[float, list[int]]:
        """(seconds, collections per generation) since ``snapshot``."""
        seconds, collections = snapshot
        return self.seconds - seconds, [
            a - b for a, b in zip(self.collections, collections, strict=True)
        ]

    @contextmanager
    def active(self) -> Iterator[GcTimer]:
        gc.callbacks.append(self)
        try:
            yield self
        finally:
            gc.callbacks.remove(self)


#: Registered while the benchmark runs; each run reads it at its start and end.
GC = GcTimer()


def other_benchmarks() -> set[str]:
    """Command lines of other ``bench/bench_*.py`` processes (they share the CPUs)."""
    found = set()
    for pid, _comm, cmdline in ServiceCpu._processes():
        if pid != os.getpid() and b"bench/bench_" in cmdline and b"python" in cmdline:
            found.add(cmdline.replace(b"\0", b" ").decode(errors="replace").strip())
    return found


# --- where a rebuild's time goes --------------------------------------------------------


class Split:
    """Wall time of a rebuild's phases, and of the steps inside each (exclusive).

    The phases are the calls of ``_Rebuilder.replay`` and ``catch_up``; a step
    (``Applier.apply``, the read model's ``load``/``write``, the client's
    ``mget``/``bulk``, ``save_state``) is counted under the phase it runs in,
    and its time excludes the wrapped steps inside it. The wrappers run once
    per batch, not per event: they cost nothing measurable.
    """

    def __init__(self) -> None:
        self.phase = "start"
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        #: (phase, entered, left), perf_counter.
        self.spans: list[tuple[str, float, float]] = []
        self._stack: list[list[float]] = []

    def step(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            label = f"{self.phase}:{name}"
            self._stack.append([0.0])
            started = clock()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = clock() - started
                (children,) = self._stack.pop()
                self.seconds[label] += elapsed - children
                self.calls[label] += 1
                if self._stack:
                    self._stack[-1][0] += elapsed

        return timed

    def phase_of(
        self, function: Callable[..., Any], name: Callable[..., str]
    ) -> Callable[..., Any]:
        step = self.step("self", function)

        def timed(*args: Any, **kwargs: Any) -> Any:
            outer, self.phase = self.phase, name(*args, **kwargs)
            started = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                self.spans.append((self.phase, started, time.perf_counter()))
                self.phase = outer

        return timed

    def patches(self) -> ExitStack:
        """Wrap the rebuild's methods (class attributes) until the stack closes."""
        stack = ExitStack()

        def wrap(owner: Any, attribute: str, wrapper: Callable[..., Any]) -> None:
            stack.enter_context(mock.patch.object(owner, attribute, wrapper))

        rebuilder = rebuild_module._Rebuilder
        wrap(rebuilder, "replay", self.phase_of(rebuilder.replay, lambda *_a, **_k: "replay"))

        def catch_up_phase(*args: Any, **kwargs: Any) -> str:
            label = str(kwargs.get("phase", args[3] if len(args) > 3 else ""))
            return "after-swap" if "after" in label else "catch-up"

        wrap(rebuilder, "catch_up", self.phase_of(rebuilder.catch_up, catch_up_phase))
        wrap(rebuilder, "save_state", self.step("save state", rebuilder.save_state))
        wrap(Applier, "apply", self.step("fold", Applier.apply))
        wrap(ElasticsearchReadModel, "load", self.step("load", ElasticsearchReadModel.load))
        wrap(ElasticsearchReadModel, "write", self.step("write", ElasticsearchReadModel.write))
        wrap(ElasticsearchReadModel, "swap", self.step("swap", ElasticsearchReadModel.swap))
        wrap(Elasticsearch, "mget", self.step("mget", Elasticsearch.mget))
        wrap(Elasticsearch, "bulk", self.step("bulk", Elasticsearch.bulk))
        return stack

    def phases(self, started: float, ended: float) -> dict[str, float]:
        """Wall seconds per phase, and per step of the replay (they sum to the phase)."""
        spans = {name: (entered, left) for name, entered, left in self.spans}
        replay = spans.get("replay", (started, started))
        catch_up = spans.get("catch-up", (replay[1], replay[1]))
        after = spans.get("after-swap", (catch_up[1], catch_up[1]))
        s = self.seconds
        return {
            "start": replay[0] - started,
            "replay": replay[1] - replay[0],
            "replay:read": s["replay:self"],
            "replay:fold": s["replay:fold"],
            "replay:load": s["replay:load"],
            "replay:mget": s["replay:mget"],
            "replay:write": s["replay:write"],
            "replay:bulk": s["replay:bulk"],
            "replay:state": s["replay:save state"],
            "between": catch_up[0] - replay[1],
            "catch-up": catch_up[1] - catch_up[0],
            "swap": after[0] - catch_up[1],
            "after-swap": after[1] - after[0],
            "end": ended - after[1],
        }


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


# --- the two sides ------------------------------------------------------------------------


def run_rebuild(settings: Settings, projection: CustomerOrdersProjection) -> tuple[Run, Any]:
    """One timed ``rebuild`` (an empty v1 made beforehand); (run, rebuild's result)."""
    read_model_for(settings, projection).ensure()  # the live model to swap from: not timed
    split = Split()
    timeline: list[tuple[float, int]] = []
    clock = time.perf_counter

    def progress(phase: str, done: int, _total: int) -> None:
        if phase.startswith("replaying"):
            timeline.append((clock() - started, done))

    services = ServiceCpu()
    with split.patches():
        service_before = services.sample()
        cpu_started, thread_started = time.process_time(), time.thread_time()
        gc_started = GC.snapshot()
        started = clock()
        result = rebuild(settings, APP_NAME, projection, progress=progress)
        ended = clock()
        gc_seconds, gc_collections = GC.since(gc_started)
        thread_cpu_seconds = time.thread_time() - thread_started
        process_cpu = time.process_time() - cpu_started
        service = ServiceCpu.used(service_before, services.sample())
    run = Run(
        seconds=ended - started,
        events=result.replayed,
        process_cpu_seconds=process_cpu,
        thread_cpu_seconds=thread_cpu_seconds,
        service_cpu_seconds=service,
        timeline=timeline,
        phases=split.phases(started, ended),
        result=asdict(result),
        gc_seconds=gc_seconds,
        gc_collections=gc_collections,
    )
    run.phases["calls"] = float(sum(split.calls.values()))
    return run, result


@dataclass
class WorkerRun:
    """An in-process worker in a thread, watched until it has applied every event."""

    settings: Settings
    projection: CustomerOrdersProjection
    errors: list[BaseException] = field(default_factory=list)
    worker: ProjectionWorker = field(init=False)

    def __post_init__(self) -> None:
        self.worker = ProjectionWorker(self.settings, APP_NAME, self.projection)

    def _target(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # reported by the watcher
            self.errors.append(exc)

    def until(self, events: int, timeout: float) -> Run:
        """Start the worker; time it until it has applied (and committed) ``events``.

        After ``timeout`` seconds the run stops short, as a partial run: the
        events applied so far over the seconds it took them.
        """
        worker = self.worker
        thread = threading.Thread(target=self._target, name="worker", daemon=True)
        services = ServiceCpu()
        service_before = services.sample()
        cpu_started = time.process_time()
        gc_started = GC.snapshot()
        started = time.perf_counter()
        thread.start()
        timeline: list[tuple[float, int]] = []
        partial = False
        try:
            while True:
                processed = worker.processed
                now = time.perf_counter()
                if processed and (not timeline or timeline[-1][1] != processed):
                    timeline.append((now - started, processed))
                if processed >= events or now - started > timeout:
                    partial = processed < events
                    # A partial run counts up to its last committed batch.
                    seconds = timeline[-1][0] if partial and timeline else now - started
                    applied = processed
                    process_cpu = time.process_time() - cpu_started
                    worker_cpu = thread_cpu(thread)
                    service = ServiceCpu.used(service_before, services.sample())
                    gc_seconds, gc_collections = GC.since(gc_started)
                    break
                if self.errors or not thread.is_alive():
                    raise BenchmarkError(f"the worker stopped early: {self.errors!r}")
                time.sleep(POLL_SECONDS)
        finally:
            worker.stop()
            thread.join(timeout=120)
        if thread.is_alive() or self.errors:
            raise BenchmarkError(f"the worker did not stop cleanly: {self.errors!r}")
        if applied == 0:
            raise BenchmarkError(f"the worker applied nothing in {timeout:.0f} s")
        return Run(
            seconds=seconds,
            events=applied,
            process_cpu_seconds=process_cpu,
            thread_cpu_seconds=worker_cpu,
            service_cpu_seconds=service,
            timeline=timeline,
            partial=partial,
            gc_seconds=gc_seconds,
            gc_collections=gc_collections,
        )


def measure_profile(settings: Settings, path: Path) -> list[dict[str, Any]]:
    """One rebuild under cProfile (untimed); the top functions by own and cumulative time."""
    projection = CustomerOrdersProjection()
    read_model_for(settings, projection).ensure()
    profiler = cProfile.Profile()
    profiler.runcall(rebuild, settings, APP_NAME, projection)
    profiler.dump_stats(path)
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, func), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(filename).name}:{line}({func})",
                "calls": calls,
                "own_seconds": own,
                "cumulative_seconds": cumulative,
            }
        )
    by_cumulative = sorted(rows, key=lambda r: r["cumulative_seconds"], reverse=True)
    rows.sort(key=lambda r: r["own_seconds"], reverse=True)
    return rows[:30] + [{**r, "by": "cumulative"} for r in by_cumulative[:30]]


# --- the run ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """Everything measured in one run of the script."""

    measurements: list[Measurement]
    head: int
    customers: int
    fill_seconds: float
    publish_seconds: float
    topic: str
    messages_on_topic: int
    document_bytes_mean: float = 0.0
    profile: list[dict[str, Any]] | None = None
    profile_path: str | None = None


class Bench:
    """One run's store, topic, expected documents, and what it creates (to clean up)."""

    def __init__(self, settings: Settings, config: Config, stamp: str, console: Console):
        self.settings = settings
        self.config = config
        self.stamp = stamp
        self.console = console
        self.base = f"bench-rebuild-{stamp.lower()}"
        self.es = es_backend.client(settings).options(request_timeout=120)
        self.topic = topic_for(settings, APP_NAME, "Order")
        self.head = 0
        self.on_topic = 0
        self.expected: dict[str, tuple[int, Decimal]] = {}
        self.groups: list[str] = []
        self.fill_seconds = 0.0
        self.publish_seconds = 0.0
        self.document_bytes: list[float] = []
        self.tracked_objects = 0

    # -- setup ---------------------------------------------------------------------------

    def setup(self) -> None:
        """Fill the store, publish it, put the live group at the end (none timed)."""
        config, console, settings = self.config, self.console, self.settings
        console.log(
            f"filling schema {settings.postgres_schema} with {config.events:,} Order.Placed "
            f"events for {config.customers:,} customers ({config.fill_chunk} per transaction)"
        )
        self.fill_seconds = fill_orders(settings, config, console)
        self.head = store_head(settings, APP_NAME)
        if self.head != config.events:
            raise BenchmarkError(f"the store holds {self.head} events, expected {config.events}")
        console.log(
            f"filled in {self.fill_seconds:.1f} s ({self.head / self.fill_seconds:,.0f} "
            f"events/s, not timed); publishing to {self.topic}"
        )
        self.publish_seconds = publish_all(settings, self.head)
        # The relay also writes watermark messages: at least N, and a few more.
        live_group = consumer_group(settings, APP_NAME, CustomerOrdersProjection.name)
        self.groups.append(live_group)
        self.on_topic = commit_at_end(settings, live_group, self.topic)
        if self.on_topic < self.head:
            raise BenchmarkError(f"{self.on_topic} messages on {self.topic}, expected {self.head}")
        self.expected = expected_views(config)
        gc.collect()
        self.tracked_objects = len(gc.get_objects())
        console.log(
            f"published in {self.publish_seconds:.1f} s ({self.on_topic:,} messages with the "
            f"relay's watermarks, {settings.topic_partitions} partitions, not timed); group "
            f"{live_group} committed at the end, as a caught-up live worker leaves it; "
            f"{self.tracked_objects:,} objects tracked by the garbage collector"
        )

    def settings_for(self, tag: str) -> Settings:
        """Settings with a fresh index prefix for one run (same topics, same store)."""
        return self.settings.model_copy(update={"index_prefix": f"{self.base}-{tag}-"})

    # -- one run of each side --------------------------------------------------------------

    def rebuild(self, tag: str, cold_group: bool) -> Run:
        """One rebuild into fresh indices; checked."""
        run_settings = self.settings_for(tag)
        if cold_group:
            projection = projection_named(f"customer_orders_{tag}")
            self.groups.append(consumer_group(run_settings, APP_NAME, projection.name))
        else:
            projection = CustomerOrdersProjection()
        self.groups.append(consumer_group(run_settings, APP_NAME, projection.name) + ".rebuild")
        run, result = run_rebuild(run_settings, projection)
        self.check_rebuild(run_settings, projection, result)
        return run

    def check_rebuild(
        self, run_settings: Settings, projection: CustomerOrdersProjection, result: RebuildResult
    ) -> None:
        alias, _ = index_names(run_settings, projection.name)
        serving = read_model_for(run_settings, projection).serving()
        if (
            result.replayed != self.head
            or result.failures
            or result.previous != f"{alias}-v1"
            or serving != f"{alias}-v2"
        ):
            raise BenchmarkError(f"unexpected rebuild: {result}, serving {serving}")
        views, size = es_views(self.es, alias)
        check_views(views, self.expected, f"rebuild of {alias}")
        self.document_bytes.append(size)

    def live(self, tag: str, events: int | None = None) -> Run:
        """One worker run with a fresh consumer group and fresh indices; checked if whole."""
        run_settings = self.settings_for(tag)
        projection = projection_named(f"customer_orders_{tag}")
        self.groups.append(consumer_group(run_settings, APP_NAME, projection.name))
        timeout = self.config.live_timeout if events is None else RUN_TIMEOUT
        run = WorkerRun(run_settings, projection).until(events or self.head, timeout)
        if events is None and not run.partial:
            alias, checkpoints = index_names(run_settings, projection.name)
            self.es.indices.refresh(index=[alias, checkpoints])
            status = projection_status(run_settings, APP_NAME, projection)
            if status.lag != 0 or status.position != self.head:
                raise BenchmarkError(
                    f"{projection.name}: lag {status.lag}, position {status.position}"
                )
            views, _ = es_views(self.es, alias)
            check_views(views, self.expected, f"live worker into {alias}")
        return run

    def warm_up(self) -> None:
        """Each side once on a few events, untimed (imports, connections, ES caches)."""
        warm = min(self.config.warmup, self.head)
        run_settings = self.settings_for("warmup-rebuild")
        projection = CustomerOrdersProjection()
        read_model_for(run_settings, projection).ensure()
        started = time.perf_counter()
        rebuild(run_settings, APP_NAME, projection, from_position=self.head - warm)
        rebuild_seconds = time.perf_counter() - started
        live_run = self.live("warmup_live", warm)
        self.console.log(
            f"warm-up done (the last {warm:,} events rebuilt in {rebuild_seconds:.1f} s; "
            f"the first {live_run.events:,} consumed live in {live_run.seconds:.1f} s; not timed)"
        )

    # -- the rounds --------------------------------------------------------------------------

    def run_rounds(self, variants: Sequence[Variant]) -> list[Measurement]:
        """The timed rounds, alternating the order of the variants."""
        config = self.config
        measurements = {v.key: Measurement(v) for v in variants}
        for round_no in range(1, config.rounds + 1):
            order = list(variants) if round_no % 2 else list(reversed(variants))
            for v in order:
                tag = f"r{round_no}_{v.key}".replace("-", "_")
                others = other_benchmarks()
                run = self.rebuild(tag, v.cold_group) if v.side == "rebuild" else self.live(tag)
                run.others_running = sorted(others | other_benchmarks())
                measurements[v.key].runs.append(run)
                cut = f" PARTIAL: first {run.events:,} of {self.head:,}" if run.partial else ""
                if run.others_running:
                    cut += (
                        f" [yellow](other benchmarks running: {escape(str(run.others_running))})[/]"
                    )
                self.console.log(
                    f"round {round_no}/{config.rounds}  {v.label:<42} "
                    f"{run.events_per_second:>8,.0f} events/s  ({run.seconds:.1f} s, "
                    f"process CPU {100 * run.process_cpu_seconds / run.seconds:.0f}%{cut})"
                )
        return [measurements[v.key] for v in variants]

    def profile(self, outcome: Outcome) -> None:
        """One more rebuild under cProfile, untimed."""
        self.config.results.mkdir(parents=True, exist_ok=True)
        path = self.config.results / f"rebuild-{self.stamp}.prof"
        self.groups.append(
            consumer_group(self.settings, APP_NAME, CustomerOrdersProjection.name) + ".rebuild"
        )
        started = time.perf_counter()
        outcome.profile = measure_profile(self.settings_for("profile"), path)
        outcome.profile_path = str(path)
        self.console.log(
            f"profiled rebuild ({time.perf_counter() - started:.1f} s under cProfile) "
            f"saved to {path}"
        )

    # -- cleanup -----------------------------------------------------------------------------

    def clean_up(self) -> None:
        """Delete the indices, topics and consumer groups this run created."""
        problems: list[str] = []
        for what, step in (
            ("indices", self._delete_indices),
            ("topics", self._delete_topics),
            ("consumer groups", self._delete_groups),
        ):
            try:
                step()
            except Exception as exc:
                problems.append(f"{what}: {exc}")
        if problems:
            self.console.log(f"[yellow]clean-up incomplete: {'; '.join(problems)}")
        else:
            self.console.log(
                f"cleaned up: indices {self.base}-*, topics {self.settings.topic_prefix}*, "
                f"{len(set(self.groups))} consumer groups"
            )

    def _delete_indices(self) -> None:
        found = self.es.indices.get(index=f"{self.base}-*", expand_wildcards="all")
        for index in found:
            self.es.options(ignore_status=404).indices.delete(index=index)

    def _delete_topics(self) -> None:
        prefix = self.settings.topic_prefix
        if not (prefix and prefix.startswith("bench-rebuild-")):
            raise BenchmarkError(f"not this benchmark's topic prefix: {prefix!r}")
        admin = kafka_backend.admin(self.settings)
        topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
        if topics:
            for future in admin.delete_topics(topics, operation_timeout=30).values():
                future.result(timeout=60)

    def _delete_groups(self) -> None:
        if not self.groups:
            return
        admin = kafka_backend.admin(self.settings)
        futures = admin.delete_consumer_groups(sorted(set(self.groups)), request_timeout=30)
        for future in futures.values():
            try:
                future.result(timeout=60)
            except Exception as exc:  # a group that never existed
                if "GROUP_ID_NOT_FOUND" not in str(exc):
                    raise


def variants_for(config: Config) -> list[Variant]:
    return [REBUILD, *([REBUILD_COLD] if config.cold_group else []), LIVE]


def measure(settings: Settings, config: Config, stamp: str, console: Console) -> Outcome:
    """Fill and publish, then run the interleaved rounds; clean up whatever happens."""
    bench = Bench(settings, config, stamp, console)
    with ExitStack() as stack:
        stack.enter_context(fresh_schema(settings))
        stack.callback(bench.clean_up)
        stack.enter_context(GC.active())
        bench.setup()
        if config.warmup:
            bench.warm_up()
        outcome = Outcome(
            bench.run_rounds(variants_for(config)),
            bench.head,
            len(bench.expected),
            bench.fill_seconds,
            bench.publish_seconds,
            bench.topic,
            bench.on_topic,
        )
        outcome.document_bytes_mean = statistics.fmean(bench.document_bytes)
        if config.profile:
            bench.profile(outcome)
    return outcome


def ratios_of(measurements: Sequence[Measurement]) -> list[Ratio]:
    """Every rebuild variant over the live worker.

    If a live run was cut short (--live-timeout), the ratio compares the
    rates over the same first events: the rebuild's time to reach them is
    read from its progress curve.
    """
    by_key = {m.variant.key: m for m in measurements}
    base = by_key[BASELINE]
    ratios = []
    for m in measurements:
        if m.variant.key == BASELINE:
            continue
        if not base.partial:
            round_ratios = [
                mine / theirs
                for mine, theirs in zip(m.events_per_second, base.events_per_second, strict=True)
            ]
            ratios.append(Ratio(m.variant.key, BASELINE, m.median / base.median, round_ratios))
            continue
        round_ratios = []
        for mine, theirs in zip(m.runs, base.runs, strict=True):
            upto = mine.seconds_to(theirs.events)
            if upto is None or upto <= 0:
                raise BenchmarkError("the rebuild's progress curve does not reach the live run's")
            round_ratios.append((theirs.events / upto) / theirs.events_per_second)
        ratios.append(
            Ratio(
                m.variant.key,
                BASELINE,
                statistics.median(round_ratios),
                round_ratios,
                like_for_like_events=min(r.events for r in base.runs),
            )
        )
    return ratios


# --- output -------------------------------------------------------------------------------


def median_phases(m: Measurement) -> dict[str, float]:
    """Median seconds of each phase and replay step over a rebuild variant's rounds."""
    keys = [k for _, k in PHASES if k != "other"] + [k for _, k in REPLAY_STEPS]
    out = {k: statistics.median(r.phases.get(k, 0.0) for r in m.runs) for k in keys}
    out["other"] = statistics.median(
        r.phases.get("between", 0.0) + r.phases.get("end", 0.0) for r in m.runs
    )
    return out


def cpu_percent(runs: Sequence[Run], service: str) -> str:
    values = [r.service_cpu_seconds.get(service) for r in runs]
    known = [100 * v / r.seconds for v, r in zip(values, runs, strict=True) if v is not None]
    return f"{statistics.median(known):.0f}%" if known else "-"


def print_tables(
    console: Console, outcome: Outcome, ratios: Sequence[Ratio], config: Config
) -> None:
    """The rounds table, the rebuild's phases, and the profile if measured."""
    by_variant = {r.variant: r for r in ratios}
    table = Table(
        title=(
            f"Read-model rebuild vs live consumption: {outcome.head:,} Order.Placed events, "
            f"{outcome.customers:,} customers, {config.rounds} interleaved round"
            f"{'s' if config.rounds > 1 else ''}"
        )
    )
    table.add_column("variant")
    table.add_column("median events/s", justify="right")
    table.add_column("min - max", justify="right")
    table.add_column("median wall s", justify="right")
    table.add_column("events", justify="right")
    table.add_column("bench CPU", justify="right")
    table.add_column("GC", justify="right")
    table.add_column("ES CPU", justify="right")
    table.add_column("PG CPU", justify="right")
    table.add_column("vs live (median)", justify="right")
    table.add_column("per-round ratios", justify="right")
    for m in outcome.measurements:
        ratio = by_variant.get(m.variant.key)
        events = {r.events for r in m.runs}
        table.add_row(
            m.variant.label,
            f"{m.median:,.0f}",
            f"{min(m.events_per_second):,.0f} - {max(m.events_per_second):,.0f}",
            f"{m.median_seconds:.1f}",
            ", ".join(f"{e:,}" for e in sorted(events)) + (" (partial)" if m.partial else ""),
            f"{statistics.median(100 * r.process_cpu_seconds / r.seconds for r in m.runs):.0f}%",
            f"{statistics.median(100 * r.gc_seconds / r.seconds for r in m.runs):.1f}%",
            cpu_percent(m.runs, "elasticsearch"),
            cpu_percent(m.runs, "postgres"),
            f"{ratio.ratio_of_medians:.2f}x" if ratio else "1.00x (baseline)",
            ", ".join(f"{r:.2f}" for r in ratio.round_ratios) if ratio else "",
        )
    console.print(table)
    like = [r for r in ratios if r.like_for_like_events]
    console.print(
        "ratio = rebuild events/s / live worker events/s in the same round; compare ratios, not "
        "absolute figures across runs. CPU: % of one core over the run (bench: this process, "
        "every thread; ES, PG: the services' processes, whatever else ran on them). GC: wall "
        "time in the garbage collector's pauses."
        + (
            f" The live runs stopped after --live-timeout ({config.live_timeout:.0f} s), so "
            f"the ratio compares both over the first {like[0].like_for_like_events:,} events "
            "(the rebuild's time to them read from its progress)."
            if like
            else ""
        )
    )
    for m in outcome.measurements:
        if m.variant.side != "rebuild":
            continue
        phases = median_phases(m)
        total = m.median_seconds
        split = Table(title=f"Where the time of '{m.variant.label}' goes (median of rounds)")
        split.add_column("phase / step of the replay")
        split.add_column("seconds", justify="right")
        split.add_column("share", justify="right")
        split.add_column("us / event", justify="right")
        rows = [(label, key) for label, key in PHASES]
        rows[2:2] = [(f"  {label}", key) for label, key in REPLAY_STEPS]
        for label, key in rows:
            seconds = phases[key]
            split.add_row(
                label,
                f"{seconds:.2f}",
                f"{100 * seconds / total:.1f}%",
                f"{1e6 * seconds / outcome.head:.1f}",
            )
        console.print(split)
    if outcome.profile:
        profile = Table(title="cProfile of one rebuild: top functions by own time")
        profile.add_column("function")
        profile.add_column("calls", justify="right")
        profile.add_column("own s", justify="right")
        profile.add_column("cumulative s", justify="right")
        for row in [r for r in outcome.profile if "by" not in r][:20]:
            profile.add_row(
                row["function"],
                f"{row['calls']:,}",
                f"{row['own_seconds']:.2f}",
                f"{row['cumulative_seconds']:.2f}",
            )
        console.print(profile)


def thinned(timeline: Sequence[tuple[float, int]]) -> list[tuple[float, int]]:
    """At most TIMELINE_POINTS points of a progress curve (the last one kept)."""
    if len(timeline) <= TIMELINE_POINTS:
        return list(timeline)
    step = len(timeline) / TIMELINE_POINTS
    picked = [timeline[int(i * step)] for i in range(TIMELINE_POINTS)]
    return [*picked, timeline[-1]]


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
        "benchmark": "rebuild",
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "config": {
            **asdict(config),
            "results": str(config.results),
            "event": "Order.Placed (one new Order per event, one line), customers repeating",
            "projection": "projections.customers:CustomerOrdersProjection",
            "topic": outcome.topic,
            "messages_on_topic": outcome.messages_on_topic,
            "topic_partitions": settings.topic_partitions,
            "projection_batch_size": settings.projection_batch_size,
            "rebuild_batch_size": settings.rebuild_batch_size,
            "projection_retries": settings.projection_retries,
            "document_bytes_mean_after_rebuild": outcome.document_bytes_mean,
            "fill_seconds_not_timed": outcome.fill_seconds,
            "publish_seconds_not_timed": outcome.publish_seconds,
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
            f"group; polled every {POLL_SECONDS * 1000:.0f} ms",
            "phases": "wall time of _Rebuilder.replay and catch_up calls; replay steps are "
            "exclusive times of Applier.apply, ElasticsearchReadModel.load/write, "
            "Elasticsearch.mget/bulk, save_state inside replay ('read' = the rest of replay: "
            "read_envelopes' SQL, encode and Envelope.decode, and the loop); wrappers once per "
            "batch",
            "clock": "time.perf_counter",
        },
        "machine": {**machine, "load_average_at_end": list(os.getloadavg())},
        "variants": [
            {
                **asdict(m.variant),
                "rounds": [
                    {
                        "round": n,
                        **{k: v for k, v in asdict(r).items() if k != "timeline"},
                        "events_per_second": r.events_per_second,
                        "timeline": thinned(r.timeline),
                    }
                    for n, r in enumerate(m.runs, start=1)
                ],
                "median_events_per_second": m.median,
                "min_events_per_second": min(m.events_per_second),
                "max_events_per_second": max(m.events_per_second),
                "median_seconds": m.median_seconds,
                "spread_percent": m.spread_percent,
                "partial": m.partial,
                "median_phases": median_phases(m) if m.variant.side == "rebuild" else None,
            }
            for m in outcome.measurements
        ],
        "ratios": [asdict(r) for r in ratios],
        "rebuild_profile_top": outcome.profile,
        "rebuild_profile_file": outcome.profile_path,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


COLOURS = {"rebuild": "#1f77b4", "rebuild-cold": "#6baed6", "live": "#9e9e9e"}
PHASE_COLOURS = {
    "start": "#bdbdbd",
    "replay:read": "#1f77b4",
    "replay:mget": "#ff7f0e",
    "replay:load": "#ffbb78",
    "replay:fold": "#2ca02c",
    "replay:write": "#98df8a",
    "replay:bulk": "#d62728",
    "replay:state": "#9467bd",
    "catch-up": "#8c564b",
    "swap": "#e377c2",
    "after-swap": "#17becf",
    "other": "#7f7f7f",
}
PHASE_LABELS = {
    "start": "start",
    "replay:read": "replay: read store",
    "replay:mget": "replay: ES mget",
    "replay:load": "replay: docs from _source",
    "replay:fold": "replay: fold",
    "replay:write": "replay: doc bodies",
    "replay:bulk": "replay: ES bulk",
    "replay:state": "replay: save progress",
    "catch-up": "catch up (Kafka)",
    "swap": "swap",
    "after-swap": "catch up after swap",
    "other": "other",
}


def save_chart(
    path: Path,
    *,
    outcome: Outcome,
    ratios: Sequence[Ratio],
    config: Config,
    machine: dict[str, Any],
    stamp: str,
) -> None:
    """Bars of median events/s, the rebuild's time split, and the progress curves."""
    by_variant = {r.variant: r for r in ratios}
    figure = Figure(figsize=(11, 11), dpi=110)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(3, 1, height_ratios=[3, 1.3, 2.4])
    axes = figure.add_subplot(grid[0])
    split_axes = figure.add_subplot(grid[1])
    curve_axes = figure.add_subplot(grid[2])
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
        text = f"{m.median:,.0f}/s, {m.median_seconds:,.0f} s\n" + (
            f"{ratio.ratio_of_medians:.2f}x live" if ratio else "baseline"
        )
        if m.partial:
            text += f"\n(first {min(r.events for r in m.runs):,} events)"
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
    axes.set_ylim(top=axes.get_ylim()[1] * 1.25)
    axes.set_title(
        f"Read-model rebuild vs live consumption, CustomerOrdersProjection\n"
        f"{outcome.head:,} events, {outcome.customers:,} customers x {config.rounds} "
        f"interleaved round{'s' if config.rounds > 1 else ''}, "
        f"PostgreSQL {machine['postgres']['server_version']}, Kafka {machine['kafka']['version']}, "
        f"Elasticsearch {machine['elasticsearch']['version']}, {machine['nproc']} CPUs, "
        f"run {stamp}\nbar: median; whiskers: min and max; label: median, wall time, ratio to live",
        fontsize=9,
    )
    rebuild_m = next(m for m in ms if m.variant.key == REBUILD.key)
    phases = median_phases(rebuild_m)
    keys = ["start", *[k for _, k in REPLAY_STEPS], "catch-up", "swap", "after-swap", "other"]
    left = 0.0
    total = rebuild_m.median_seconds
    for key in keys:
        width = max(0.0, phases[key])
        split_axes.barh(0, width, left=left, color=PHASE_COLOURS[key], label=PHASE_LABELS[key])
        if width / total >= 0.05:
            split_axes.text(
                left + width / 2,
                0,
                f"{100 * width / total:.0f}%",
                ha="center",
                va="center",
                fontsize=8,
                color="white",
            )
        left += width
    split_axes.set_yticks([])
    split_axes.set_xlabel("seconds (median of the rebuild's rounds)")
    split_axes.set_title("Where the rebuild's wall time goes", fontsize=9)
    split_axes.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=4, fontsize=7, frameon=False
    )
    for m in ms:
        for n, run in enumerate(m.runs):
            points = thinned(run.timeline)
            colour, alpha = COLOURS[m.variant.key], 1.0 if n == 0 else 0.45
            curve_axes.plot(
                [0.0] + [t for t, _ in points],
                [0] + [e for _, e in points],
                color=colour,
                alpha=alpha,
                label=m.variant.label if n == 0 else None,
            )
            if points and run.seconds > points[-1][0] + 0.05:
                # A rebuild's catch-up and swap come after its replay's last report.
                curve_axes.plot(
                    [points[-1][0], run.seconds],
                    [points[-1][1], run.events],
                    color=colour,
                    alpha=alpha,
                    linestyle=":",
                )
                curve_axes.plot([run.seconds], [run.events], "o", color=colour, alpha=alpha)
    curve_axes.set_xlabel("seconds since the start of the run")
    curve_axes.set_ylabel("events applied")
    curve_axes.set_title(
        "Progress of every run (rebuild: its replay's progress reports, then dotted to its "
        "end: catch-up and swap; live: events committed)",
        fontsize=9,
    )
    curve_axes.legend(fontsize=8, loc="lower right")
    curve_axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


# --- entry point --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Command-line options to a Config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="100000 events and 3 rounds instead of 1000000 and 1"
    )
    parser.add_argument("--events", type=int, help="events in the store (each run applies all)")
    parser.add_argument(
        "--customers", type=int, default=5000, help="distinct customers (documents)"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 1; 3 with --quick)")
    parser.add_argument(
        "--warmup", type=int, default=5000, help="events each side applies untimed first"
    )
    parser.add_argument(
        "--fill-chunk", type=int, default=2000, help="new orders saved per transaction"
    )
    parser.add_argument(
        "--live-timeout",
        type=float,
        default=600.0,
        help="seconds after which a live run stops and reports its rate so far",
    )
    parser.add_argument(
        "--cold-group",
        action="store_true",
        help="also a rebuild whose live consumer group never committed (catches up the "
        "whole topic)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="one more rebuild under cProfile (saves .prof)"
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR, help="where to save the JSON and the chart"
    )
    args = parser.parse_args(argv)
    events = args.events or (100_000 if args.quick else 1_000_000)
    rounds = args.rounds or (3 if args.quick else 1)
    for name, value in (
        ("events", events),
        ("customers", args.customers),
        ("rounds", rounds),
        ("fill-chunk", args.fill_chunk),
    ):
        if value < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0 or args.warmup >= events:
        parser.error("--warmup must be at least 0 and below --events")
    if args.live_timeout <= 0:
        parser.error("--live-timeout must be positive")
    return Config(
        events=events,
        customers=args.customers,
        rounds=rounds,
        warmup=args.warmup,
        fill_chunk=args.fill_chunk,
        live_timeout=args.live_timeout,
        cold_group=args.cold_group,
        quick=args.quick,
        profile=args.profile,
        results=args.results,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and save the JSON and the chart."""
    config = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # rich assumes 80 columns when piped; the table needs more
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    base = f"bench-rebuild-{stamp.lower()}"
    settings = Settings.load().model_copy(
        update={
            "postgres_schema": f"bench_rebuild_{stamp.lower()}",
            "topic_prefix": base,
            "index_prefix": f"{base}-",
        }
    )
    machine = machine_info(settings, services=("postgres", "kafka", "elasticsearch"))
    console.log(
        f"PostgreSQL {machine['postgres']['server_version']} at {settings.postgres_address()}, "
        f"Kafka {machine['kafka']['version']} at {settings.kafka_bootstrap}, Elasticsearch "
        f"{machine['elasticsearch']['version']} at {settings.elasticsearch_url}, "
        f"{machine['nproc']} CPUs, Python {machine['python']}; {config.events:,} events, "
        f"{config.customers:,} customers, {config.rounds} round(s); batches of "
        f"{settings.projection_batch_size} (rebuild: "
        f"{settings.rebuild_batch_size}), "
        f"{settings.topic_partitions} partitions"
    )
    outcome = measure(settings, config, stamp, console)
    ratios = ratios_of(outcome.measurements)
    print_tables(console, outcome, ratios, config)
    config.results.mkdir(parents=True, exist_ok=True)
    json_path = config.results / f"rebuild-{stamp}.json"
    png_path = config.results / f"rebuild-{stamp}.png"
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
