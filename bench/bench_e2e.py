"""End to end: from a command accepted to its document searchable, at fixed command rates.

The relay and the ``order_summaries`` worker run as processes; a paced loop
sends ``PlaceOrder`` at fixed rates and follows a sample of them until their
summary is searchable; the workers' per-stage figures come from their
Prometheus endpoints (``bench/README.md``, "End to end"). Run from the
repository root::

    .venv/bin/python bench/bench_e2e.py [--quick] [--rates 100,500,2000] [--seconds S]
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from _kit import cli, report
from _kit.harness import ProcessPipeline, Scrape, scrape, wait_until
from _kit.machine import pipeline_settings
from _kit.measure import BenchmarkError, quantiles_ms
from _kit.product import STAGES, IndexNames, Runtime, es_backend, read_status
from _kit.stack import APP_NAME
from rich.console import Console

from cqrskit import CommandBus, Settings
from examples.shop import OrderLine, PlaceOrder, ShopApp, handlers
from projections import OrderSummaries

PROJECTION = OrderSummaries.name
#: The target: p99 from command accepted to searchable, at 500 commands a second.
TARGET_RATE = 500
TARGET_P99_MS = 250.0
#: A sampled command not searchable after this long counts as lost.
SAMPLE_TIMEOUT = 60.0
LINE = OrderLine(sku="tea", quantity=1, unit_price=Decimal("2.00"))
#: Prometheus histograms read per phase: (metric, label that tells the series apart).
HISTOGRAMS: dict[str, list[tuple[str, str | None]]] = {
    "worker": [
        ("cqrskit_stage_seconds", "stage"),
        ("cqrskit_projection_elasticsearch_seconds", "operation"),
        ("cqrskit_projection_batch_events", None),
    ],
    "relay": [("cqrskit_relay_kafka_ack_seconds", None), ("cqrskit_relay_page_events", None)],
}
#: Prometheus gauges sampled every second during a phase.
GAUGES = {
    "relay": ["cqrskit_relay_lag_events", "cqrskit_relay_lag_seconds"],
    "worker": ["cqrskit_projection_lag_events", "cqrskit_projection_lag_seconds"],
}
NOTES = {
    "projection": PROJECTION,
    "command": "PlaceOrder(customer_id, one line): one Order.Placed event, a new order",
    "processes": "cqrskit relay run; cqrskit projections run order_summaries; each with "
    "--metrics-port",
    "e2e_timed": "from bus.dispatch returning (time.perf_counter) to the answer of the first "
    "ids search that shows the order's summary with status placed",
    "target": f"p99 < {TARGET_P99_MS:.0f} ms at {TARGET_RATE} cmd/s",
}


@dataclass(frozen=True)
class Phase:
    """One rate to hold for a while; ``refresh`` changes the index's refresh_interval."""

    rate: int
    round: int
    refresh: str | None = None

    @property
    def label(self) -> str:
        """``500 cmd/s`` or ``500 cmd/s, refresh_interval 100ms (what-if)``."""
        extra = f", refresh_interval {self.refresh} (what-if)" if self.refresh else ""
        return f"{self.rate:,} cmd/s{extra}"

    @property
    def writers(self) -> int:
        """Writer threads: one per 100 commands a second, at most 8.

        A command takes 2-15 ms here; more than 8 threads only queue on the
        events table's lock (20 writers sent fewer commands than 5 in a trial).
        """
        return max(1, min(8, math.ceil(self.rate / 100)))


class Poller:
    """Calls :meth:`poll` every ``interval`` seconds in a thread of its own, until stopped."""

    def __init__(self, name: str, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        """One round of the thread's work."""

    def stop(self) -> None:
        """Stop polling; wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=10)


class Searcher(Poller):
    """Polls Elasticsearch for the sampled orders until each one's summary is searchable.

    One search per ``interval`` for every pending order at once (an ``ids``
    query: searches see only refreshed segments, unlike a GET, which is
    realtime). An order counts as searchable when its summary shows the
    command's effect (status ``placed``); the time is taken when the answer
    arrives, so a latency is late by at most one interval and one search.
    """

    def __init__(self, alias: str, settings: Settings, interval: float):
        self.alias = alias
        self.es = es_backend.client(settings).options(request_timeout=10, ignore_status=404)
        self.lock = threading.Lock()
        self.pending: dict[str, float] = {}
        self.latencies: list[float] = []
        self.lost = self.searches = 0
        super().__init__("searcher", interval)

    def add(self, order_id: str, accepted_at: float) -> None:
        """Watch for ``order_id``, accepted at ``accepted_at`` (``time.perf_counter``)."""
        with self.lock:
            self.pending[order_id] = accepted_at

    def outstanding(self) -> int:
        """Orders still pending."""
        with self.lock:
            return len(self.pending)

    def stop(self) -> None:
        """Stop polling; close the client."""
        super().stop()
        self.es.close()

    def poll(self) -> None:
        with self.lock:
            ids = list(self.pending)
        if not ids:
            return
        try:
            found = self.es.search(
                index=self.alias,
                query={"ids": {"values": ids}},
                size=len(ids),
                source=["status"],  # type: ignore[arg-type]
                filter_path=["hits.hits._id", "hits.hits._source.status"],
            )
        except Exception:  # Elasticsearch busy or index not there yet: try again
            return
        now = time.perf_counter()
        self.searches += 1
        hits = found.get("hits", {}).get("hits", [])
        visible = [h["_id"] for h in hits if h.get("_source", {}).get("status") == "placed"]
        with self.lock:
            for order_id in visible:
                accepted = self.pending.pop(order_id, None)
                if accepted is not None:
                    self.latencies.append(now - accepted)
            for order_id, accepted in list(self.pending.items()):
                if now - accepted > SAMPLE_TIMEOUT:
                    del self.pending[order_id]
                    self.lost += 1


class GaugeWatcher(Poller):
    """Samples the lag gauges of the relay and the worker every second, in a thread."""

    def __init__(self, endpoints: dict[str, str]):
        self.endpoints = endpoints
        self.samples: dict[str, list[float]] = {m: [] for names in GAUGES.values() for m in names}
        super().__init__("gauges", 1.0)

    def poll(self) -> None:
        for process, url in self.endpoints.items():
            try:
                values = scrape(url)
            except OSError:
                continue
            for (name, _labels), value in values.items():
                if name in GAUGES[process]:
                    self.samples[name].append(value)

    def summary(self) -> dict[str, dict[str, float | None]]:
        """Stop; per gauge the max and mean of the samples."""
        self.stop()
        return {
            name: {
                "max": max(values, default=None),
                "mean": statistics.fmean(values) if values else None,
                "samples": len(values),
            }
            for name, values in self.samples.items()
        }


@dataclass
class Drive:
    """What the paced loop achieved."""

    commands: int
    writers: int
    seconds: float
    command_latencies: list[float]
    #: How late each command was sent against its due time.
    lateness: list[float]
    sampled: int

    @property
    def achieved_rate(self) -> float:
        """Commands accepted per second."""
        return self.commands / self.seconds


def drive(
    bus: CommandBus, phase: Phase, seconds: float, sample_every: int, searcher: Searcher
) -> Drive:
    """Send PlaceOrder commands for ``seconds``, command i due at ``start + i / phase.rate``.

    ``phase.writers`` threads take the next command in turn; a thread waits for the
    command's due time, or sends at once if it is late. No command is sent
    after ``seconds``: when the commands cannot keep up, fewer are sent, and
    the achieved rate (commands accepted over the time from the start to the
    last acceptance) and the lateness of the sends say by how much. Every
    ``sample_every``-th accepted command is handed to the searcher.
    """
    rate, writers = phase.rate, phase.writers
    total, counter, lock = int(rate * seconds), itertools.count(), threading.Lock()
    latencies: list[float] = []
    lateness: list[float] = []
    errors: list[str] = []
    last_accepted, sampled = [0.0], [0]
    start = time.perf_counter() + 0.1

    def writer() -> None:
        while True:
            with lock:
                i = next(counter)
            due = start + i / rate
            if i >= total or errors or time.perf_counter() > start + seconds:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            try:
                result = bus.dispatch(PlaceOrder(customer_id=f"customer-{i % 1000}", lines=[LINE]))
            except Exception as exc:
                errors.append(f"command {i}: {type(exc).__name__}: {exc}")
                return
            accepted = time.perf_counter()
            if i % sample_every == 0:
                searcher.add(str(result.aggregate_id), accepted)
            with lock:
                latencies.append(accepted - sent)
                lateness.append(max(0.0, sent - due))
                last_accepted[0] = max(last_accepted[0], accepted)
                sampled[0] += i % sample_every == 0

    threads = [threading.Thread(target=writer, name=f"writer-{n}") for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchmarkError(f"{len(errors)} command(s) failed, first: {errors[0]}")
    seconds = last_accepted[0] - start
    return Drive(len(latencies), writers, seconds, latencies, lateness, sampled[0])


# --- what the relay and the worker report ------------------------------------------------


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket the rank falls in."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # above the highest finite bucket: its bound is all we know
            if count == lower_count:
                return bound
            share = (rank - lower_count) / (count - lower_count)
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return None


def bucket_bound(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The upper bound of the bucket the ``q`` quantile falls in: it is at most this."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    return next(bound for bound, count in buckets if count >= q * buckets[-1][1])


def histogram_delta(
    before: Scrape, after: Scrape, metric: str, split_by: str | None
) -> dict[str, dict[str, Any]]:
    """Per series (the value of ``split_by``): count, mean and p50/p95/p99 of what was
    observed between the two scrapes; quantiles interpolated within the buckets."""
    series: dict[str, dict[str, Any]] = {}
    for (name, labels), value in after.items():
        if not name.startswith(metric):
            continue
        label = dict(labels).get(split_by, "") if split_by else "all"
        entry = series.setdefault(label, {"buckets": {}, "count": 0.0, "sum": 0.0})
        delta = value - before.get((name, labels), 0.0)
        if name == f"{metric}_bucket":
            bound = float(dict(labels)["le"])
            entry["buckets"][bound] = entry["buckets"].get(bound, 0.0) + delta
        elif name in (f"{metric}_count", f"{metric}_sum"):
            entry[name.rpartition("_")[2]] += delta
    found = {}
    for label, entry in series.items():
        buckets, count = sorted(entry["buckets"].items()), entry["count"]
        found[label] = {
            "count": count,
            "mean": entry["sum"] / count if count else None,
            **{f"p{p}": bucket_quantile(p / 100, buckets) for p in (50, 95, 99)},
            **{f"p{p}_at_most": bucket_bound(p / 100, buckets) for p in (50, 99)},
            "bucket_bounds": [b for b, _ in buckets if not math.isinf(b)],
        }
    return found


def limiting_stage(stages: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The stage with the largest mean of the worker's per-stage latencies."""
    per_stage = stages.get("worker:cqrskit_stage_seconds", {})
    means = {s: per_stage[s]["mean"] for s in STAGES if per_stage.get(s, {}).get("mean")}
    if not means:
        return {"stage": None, "share_of_mean": None}
    stage = max(means, key=lambda s: means[s])
    return {
        "stage": stage,
        "share_of_mean": means[stage] / sum(means.values()),
        "means_ms": {s: 1000 * v for s, v in means.items()},
    }


# --- the run ----------------------------------------------------------------------------


class Bench:
    """The pipeline's processes, the command bus, and the searcher."""

    def __init__(self, run: cli.Run, logs: Path):
        self.run, self.config = run, run.config
        self.pipeline = ProcessPipeline(run.tag, logs)
        self.settings = self.pipeline.settings
        self.alias = IndexNames.of(self.settings).alias(PROJECTION)
        self.endpoints: dict[str, str] = {}

    def start(self) -> None:
        """Create the store, start the relay and the worker, and wait for their metrics."""
        self.pipeline.cli("db", "init")
        relay = self.pipeline.start("relay", "relay", "run")
        worker = self.pipeline.start("worker", "projections", "run", PROJECTION)
        self.endpoints = {"relay": relay.wait_for_metrics(), "worker": worker.wait_for_metrics()}

    def scrape_all(self) -> dict[str, Scrape]:
        """Both endpoints, now."""
        return {process: scrape(url) for process, url in self.endpoints.items()}

    def drained(self, timeout: float = 120) -> None:
        """Wait until the relay published the head and the worker applied it all."""

        def relayed() -> bool:
            return read_status(self.settings, APP_NAME).lag_events == 0

        def applied() -> bool:
            status = Runtime(self.settings).projection_status(APP_NAME, OrderSummaries())
            return status.lag == 0 and status.partitions > 0

        wait_until(relayed, timeout, "the relay to publish the head", interval=0.2)
        wait_until(applied, timeout, "the worker to apply everything", interval=0.5)

    def set_refresh(self, value: str | None) -> None:
        """Set (or reset, with None) the refresh_interval of the index behind the alias."""
        es = es_backend.client(self.settings)
        try:
            es.indices.put_settings(
                index=self.alias, settings={"index": {"refresh_interval": value}}
            )
        finally:
            es.close()

    def run_phase(self, bus: CommandBus, phase: Phase, seconds: float) -> dict[str, Any]:
        """Hold ``phase.rate`` for ``seconds``; what it achieved and what each stage took."""
        config = self.config
        if phase.refresh:
            self.set_refresh(phase.refresh)
        sample_every = max(1, phase.rate // config.samples_per_second)
        searcher = Searcher(self.alias, self.settings, config.poll_interval)
        before = self.scrape_all()
        gauges = GaugeWatcher(self.endpoints)
        try:
            sent = drive(bus, phase, seconds, sample_every, searcher)
            wait_until(
                lambda: searcher.outstanding() == 0,
                SAMPLE_TIMEOUT + 10,
                "the sampled commands to be searchable",
                interval=0.1,
            )
            self.drained()
        finally:
            lags = gauges.summary()
            searcher.stop()
            if phase.refresh:
                self.set_refresh(None)
        after = self.scrape_all()
        stages = {
            f"{process}:{metric}": histogram_delta(before[process], after[process], metric, label)
            for process, metrics in HISTOGRAMS.items()
            for metric, label in metrics
        }
        # The worker writes its recent samples every 5 s; wait for this phase's.
        time.sleep(6)
        status = dict(json.loads(self.pipeline.cli("status", PROJECTION, "--json")))
        return {
            "label": phase.label,
            "round": phase.round,
            "target_rate": phase.rate,
            "refresh_interval": phase.refresh or "1s (default)",
            "achieved_rate": sent.achieved_rate,
            "commands": sent.commands,
            "writers": sent.writers,
            "seconds": sent.seconds,
            "sample_every": sample_every,
            "sampled": sent.sampled,
            "lost": searcher.lost,
            "searches": searcher.searches,
            "accepted_to_searchable": quantiles_ms(searcher.latencies),
            "command_dispatch": quantiles_ms(sent.command_latencies),
            "send_lateness": quantiles_ms(sent.lateness),
            "stages_from_metrics": stages,
            "lag_gauges": lags,
            "status_json": status,
            "limited_by": limiting_stage(stages),
        }

    def measure(self) -> dict[str, Any]:
        """Start the pipeline, warm it up, run every phase, stop and clean up."""
        config, console, settings = self.config, self.run.console, self.settings
        phases = [Phase(rate, n) for n in range(1, config.rounds + 1) for rate in config.rates]
        if config.what_if_refresh:
            phases.append(Phase(TARGET_RATE, 1, config.what_if_refresh))
        outcome: dict[str, Any] = {"phases": []}
        try:
            self.start()
            console.log(
                f"relay and worker running (schema {settings.postgres_schema}, topics "
                f"{settings.topic_prefix}.*, indices {settings.index_prefix}*)"
            )
            with ShopApp(settings.model_copy(update={"postgres_pool_size": 8})) as app:
                bus = CommandBus(app, handlers)
                warm = self.run_phase(bus, Phase(50, 0), config.warmup_seconds)
                console.log(
                    f"warm-up: {warm['commands']} commands, p50 "
                    f"{warm['accepted_to_searchable']['p50_ms']:.0f} ms to searchable (not kept)"
                )
                for phase in phases:
                    result = self.run_phase(bus, phase, config.seconds)
                    outcome["phases"].append(result)
                    e2e = result["accepted_to_searchable"]
                    console.log(
                        f"{phase.label} (round {phase.round}): achieved "
                        f"{result['achieved_rate']:,.0f} cmd/s with {result['writers']} writers;"
                        f" accepted to searchable p50 {e2e['p50_ms']:.0f} / p95 "
                        f"{e2e['p95_ms']:.0f} / p99 {e2e['p99_ms']:.0f} ms over "
                        f"{e2e['samples']} samples"
                    )
        finally:
            outcome["processes"] = self.pipeline.stop_all()
            for process in outcome["processes"]:
                if process["exit_code"] not in (0, None):
                    console.log(f"{process['name']} exited with {process['exit_code']}")
            self.pipeline.clean_up(console, [PROJECTION])
        outcome["settings"] = pipeline_settings(settings)
        return outcome


def summary_by_rate(phases: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per phase label: the rounds' p50/p95/p99 with their min, median and max."""
    rows = []
    for label in dict.fromkeys(p["label"] for p in phases):
        chosen = [p for p in phases if p["label"] == label]
        row: dict[str, Any] = {
            "label": label,
            "target_rate": chosen[0]["target_rate"],
            "refresh_interval": chosen[0]["refresh_interval"],
            "runs": len(chosen),
            "achieved_rate": statistics.median(p["achieved_rate"] for p in chosen),
        }
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            values = [p["accepted_to_searchable"][key] for p in chosen]
            values = [v for v in values if v is not None]
            row[key] = None
            if values:
                row[key] = {
                    "min": min(values),
                    "median": statistics.median(values),
                    "max": max(values),
                }
        row["samples"] = sum(p["accepted_to_searchable"]["samples"] for p in chosen)
        row["lost"] = sum(p["lost"] for p in chosen)
        row["limited_by"] = [p["limited_by"]["stage"] for p in chosen]
        rows.append(row)
    return rows


# --- output -------------------------------------------------------------------------------


def stage_label(stage: str | None) -> str:
    """``append→publish`` for ``append_to_publish``."""
    return str(stage).replace("_to_", "→")


def stage_mean(phase: dict[str, Any], stage: str, key: str = "mean") -> float | None:
    """A worker stage's figure in seconds, from the metrics."""
    found = phase["stages_from_metrics"]["worker:cqrskit_stage_seconds"].get(stage, {})
    return found.get(key)  # type: ignore[no-any-return]


def stage_ms(phase: dict[str, Any], stage: str, key: str) -> str:
    """A worker stage's figure in ms, from the metrics."""
    value = stage_mean(phase, stage, key)
    return "-" if value is None else f"{1000 * value:,.0f}"


def print_tables(console: Console, outcome: dict[str, Any]) -> None:
    """Per phase: rates, latency to searchable, and the stages; the processes' memory."""

    def row(p: dict[str, Any]) -> list[str]:
        e2e, lags, limit = p["accepted_to_searchable"], p["lag_gauges"], p["limited_by"]
        return [
            p["label"].replace(" (what-if)", ""),
            str(p["round"]),
            f"{p['achieved_rate']:,.0f} ({p['writers']})",
            f"{e2e['samples']}" + (f" ({p['lost']} lost)" if p["lost"] else ""),
            f"{e2e['p50_ms']:.0f} / {e2e['p95_ms']:.0f} / {e2e['p99_ms']:.0f}",
            f"{p['command_dispatch']['p99_ms']:.0f}",
            *(f"{stage_ms(p, s, 'mean')} / {stage_ms(p, s, 'p99_at_most')}" for s in STAGES),
            f"{lags['cqrskit_relay_lag_events']['max'] or 0:,.0f} / "
            f"{lags['cqrskit_projection_lag_events']['max'] or 0:,.0f}",
            f"{stage_label(limit['stage'])} ({100 * limit['share_of_mean']:.0f}%)"
            if limit["stage"]
            else "-",
        ]

    stages = " | ".join(f"{stage_label(s)} mean / p99≤" for s in STAGES)
    report.table(
        console,
        "End to end: command accepted to document searchable (ms)",
        "phase | round | achieved/s (writers) | samples | to searchable p50 / p95 / p99 | "
        f"command p99 | {stages} | max lag relay / worker | limited by",
        (row(p) for p in outcome["phases"]),
    )
    console.print(
        "stages: the worker's Prometheus histograms over the phase: the mean (exact) and the "
        "bucket bound p99 is under (buckets of 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, "
        "2500 ms ...); limited by: the stage with the largest mean, and its share of the "
        "stages' means; lags in events, the relay's and the worker's gauges, sampled every "
        "second. The read model's refresh_interval is Elasticsearch's default, 1 s, unless the "
        "phase says otherwise (the what-if phase)."
    )
    report.table(
        console,
        "Memory of the processes over the whole run (MB)",
        "process | peak RSS (VmHWM) | RSS at the end",
        (
            [
                p["name"],
                f"{p['memory']['peak_rss_mb']:.0f}",
                f"{p['memory']['last_rss_mb'] or 0:.0f}",
            ]
            for p in outcome["processes"]
        ),
    )


def short_label(phase: dict[str, Any]) -> str:
    """``500/s``, or ``500/s`` over ``refresh 100ms`` for the what-if phase."""
    refresh = phase["refresh_interval"]
    extra = "" if refresh.startswith("1s") else f"\nrefresh {refresh}"
    return f"{phase['target_rate']:,}/s{extra}"


def save_chart(path: Path, run: cli.Run, outcome: dict[str, Any]) -> None:
    """Left: p50/p95/p99 to searchable per phase; right: the worker's stage means."""
    rows, phases = outcome["summary"], outcome["phases"]
    made = report.figure(12, 5.5)
    left, right = made.subplots(1, 2)
    labels = [f"{short_label(r)}\nachieved {r['achieved_rate']:,.0f}/s" for r in rows]
    colours = {"p50_ms": "#9ecae1", "p95_ms": "#4292c6", "p99_ms": "#08519c"}
    for index, (key, colour) in enumerate(colours.items()):
        values = [r[key]["median"] if r[key] else 0 for r in rows]
        lows = [r[key]["median"] - r[key]["min"] if r[key] else 0 for r in rows]
        highs = [r[key]["max"] - r[key]["median"] if r[key] else 0 for r in rows]
        xs = [x + (index - 1) * 0.26 for x in range(len(rows))]
        left.bar(xs, values, 0.26, yerr=[lows, highs], capsize=3, color=colour, label=key[:3])
    left.axhline(TARGET_P99_MS, color="#d62728", linestyle="--", linewidth=1)
    left.annotate(
        f"target p99 at {TARGET_RATE} cmd/s: {TARGET_P99_MS:.0f} ms",
        (0, TARGET_P99_MS),
        xytext=(0, 3),
        textcoords="offset points",
        fontsize=7,
        color="#d62728",
    )
    left.set_xticks(range(len(rows)), labels, fontsize=7)
    left.set_ylabel("ms from command accepted to searchable")
    left.legend(fontsize=7)
    left.set_title("accepted → searchable (median of rounds; whiskers min-max)", fontsize=9)
    bottoms = [0.0] * len(phases)
    for stage, colour in zip(STAGES, ["#ff7f0e", "#2ca02c", "#9467bd"], strict=True):
        values = [1000 * (stage_mean(p, stage) or 0) for p in phases]
        right.bar(range(len(phases)), values, 0.6, bottom=bottoms, color=colour, label=stage)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    ticks = [f"{short_label(p)}\nround {p['round']}" for p in phases]
    right.set_xticks(range(len(phases)), ticks, fontsize=6)
    right.set_ylabel("ms, mean per event (the worker's histograms)")
    right.legend(fontsize=7)
    right.set_title("where the time goes, per stage", fontsize=9)
    made.suptitle(
        f"End to end through the relay and a worker as processes, run {run.stamp}; "
        f"{run.versions()}",
        fontsize=9,
    )
    report.save_figure(made, path)


# --- entry point --------------------------------------------------------------------------

OPTIONS = [
    cli.Opt("--rates", "100,500,2000", "commands per second", least=1, ints=True),
    cli.Opt("--seconds", 45.0, "seconds per rate", 10.0, 1e-9),
    cli.Opt("--rounds", 2, "rounds over the rates", 1, 1),
    cli.Opt("--warmup", 5.0, "seconds at 50 cmd/s first", dest="warmup_seconds"),
    cli.Opt("--samples-per-second", 50, "commands followed to searchable"),
    cli.Opt("--poll-interval", 0.02, "seconds between searches"),
    cli.Opt(
        "--what-if-refresh",
        "100ms",
        f"one more phase at {TARGET_RATE} cmd/s with this refresh_interval ('' for none)",
    ),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and save the JSON and the chart."""
    config = cli.parse(
        __doc__,
        "10 s per rate, one round",
        OPTIONS,
        argv,
        check=lambda a: None if a.rates else "--rates must name at least one rate",
    )
    config.what_if_refresh = config.what_if_refresh or None
    run = cli.Run.start("e2e", config, 190)
    run.log(
        f"rates {list(config.rates)} cmd/s, {config.seconds:.0f} s each, {config.rounds} "
        f"round(s); {config.samples_per_second} sampled commands a second, searched every "
        f"{1000 * config.poll_interval:.0f} ms"
    )
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as logs:
        outcome = Bench(run, Path(logs)).measure()
    outcome["summary"] = summary_by_rate(outcome["phases"])
    print_tables(run.console, outcome)
    run.save(NOTES, lambda path: save_chart(path, run, outcome), **outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
