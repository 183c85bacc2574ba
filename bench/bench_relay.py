"""Outbox relay throughput: cqrskit's relay against its own producer fed directly.

A pre-filled outbox of N events, sent by ``OutboxRelay`` until its recorded
position is the head of the store, against the relay's own ``KafkaPublisher``
fed the messages the relay sent, in one transaction; interleaved rounds on
fresh topics (``bench/README.md``, "Outbox to Kafka"). Run from the
repository root::

    .venv/bin/python bench/bench_relay.py [--quick] [--events N]
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from _kit import cli, report
from _kit.measure import (
    RUN_TIMEOUT,
    BenchmarkError,
    Measurement,
    StepTimer,
    Timed,
    interleaved,
    ratios,
    split_run,
)
from _kit.product import KafkaPublisher, Seal, read_status, relay_module
from _kit.stack import APP_NAME, create_topics, fill_store, fresh_schemas, messages_on, relay_loop

from cqrskit import Settings

COLOURS = {"cqrskit": "#1f77b4", "raw": "#9e9e9e"}
LABELS = {"cqrskit": "cqrskit relay", "raw": "relay's producer fed directly (baseline)"}
#: The steps of the relay's loop the instrumented run times (exclusive wall time).
SPLIT_STEPS = [
    ("start: connect, lead, producer, fence", "start"),
    ("read outbox pages (PostgreSQL)", "read"),
    ("encode envelopes", "encode"),
    ("seal messages (HMAC)", "seal"),
    ("produce (librdkafka enqueue)", "produce"),
    ("serve delivery reports: poll(0)", "poll"),
    ("commit transactions (wait for acks)", "commit"),
    ("watermarks", "watermark"),
    ("record position, lease (PostgreSQL)", "record"),
    ("other (headers, topic lookup, loop)", "other"),
]
#: What each step wraps: the relay's outbox (the instance), the relay's publisher (the class).
SPLIT_OUTBOX = [("read", "read"), ("record", "record"), ("heartbeat", "record")]
SPLIT_PUBLISHER = [("produce", "produce"), ("poll", "poll"), ("commit", "commit")]
SPLIT_PUBLISHER += [("publish_watermark", "watermark")]
#: The settings the result records.
SETTINGS = ["relay_page_size", "relay_pages_in_flight", "relay_compression"]
SETTINGS += ["topic_partitions", "topic_replication"]
NOTES = {
    "event": "Order.Placed (one new Order per event, one line)",
    "cqrskit_timed": "OutboxRelay.run in a thread, from thread start until relay.position "
    "(recorded after the transaction commits) == store head; polled every 5 ms",
    "raw_timed": "the relay's KafkaPublisher (its producer and settings, a transactional id of "
    "its own, fenced beforehand): from the first produce() of the relay's recorded messages to "
    "commit() returning, one transaction, poll(0) per page",
    "topics_per_run": "fresh per run, created beforehand (not timed), deleted at the end",
    "clock": "time.perf_counter",
}

#: One message as the relay produced it: topic, key, value, headers, partition.
Message = tuple[str, bytes, bytes, list[tuple[str, str | bytes | None]], int | None]


def run_relay(settings: Settings, relay_name: str, head: int) -> Timed:
    """One timed relay run from nothing published to ``head`` recorded."""
    run = relay_loop(settings, relay_name)[1].until(head, RUN_TIMEOUT)
    status = read_status(settings, APP_NAME, relay_name)
    if status.position < head:
        raise BenchmarkError(f"relay recorded {status.position}, expected {head}")
    return run


def record_messages(settings: Settings, head: int) -> list[Message]:
    """Run the relay once (untimed) and keep every event message it produced."""
    sent: list[Message] = []
    produce = KafkaPublisher.produce

    def recording(
        publisher: KafkaPublisher, topic: str, key: bytes, value: bytes, headers: Any, **kw: Any
    ) -> None:
        sent.append((topic, key, value, headers, kw.get("partition")))
        produce(publisher, topic, key, value, headers, **kw)

    with mock.patch.object(KafkaPublisher, "produce", recording):
        run_relay(settings, "bench-record", head)
    return sent


def run_raw(settings: Settings, messages: Sequence[Message], tag: str) -> Timed:
    """Feed ``messages`` to a ``KafkaPublisher`` in one transaction; timed to the commit.

    The publisher is fenced first (untimed), as the relay does before it
    reads; the delivery reports are served once per page, like the relay.
    """
    publisher = KafkaPublisher(settings, f"bench-raw-{tag}")
    while not publisher.fence(10):
        pass
    page = settings.relay_page_size
    first: float | None = None
    cpu_started, thread_started = time.process_time(), time.thread_time()
    started = time.perf_counter()
    publisher.begin()
    for start in range(0, len(messages), page):
        for topic, key, value, headers, partition in messages[start : start + page]:
            publisher.produce(topic, key, value, headers, partition=partition)
        publisher.poll(0)
        if first is None and publisher.pending() < start + page:
            first = time.perf_counter() - started
    while not publisher.commit(10):
        pass
    seconds = time.perf_counter() - started
    thread_cpu = time.thread_time() - thread_started
    process_cpu = time.process_time() - cpu_started
    publisher.flush(10)
    return Timed(seconds, len(messages), first, 1 if first else 0, thread_cpu, process_cpu)


def measure_split(settings: Settings, head: int) -> dict[str, Any]:
    """One relay run with every step timed (the relay's envelope encoder is found by
    :func:`_kit.product.relay_module`); slower than the timed runs by the wrappers."""
    timer = StepTimer()
    relay, loop = relay_loop(settings, "bench-split")
    wraps: list[tuple[Any, str, str]] = [(relay.outbox, n, key) for n, key in SPLIT_OUTBOX]
    wraps += [(relay_module(), "encode", "encode"), (Seal, "event", "seal")]
    wraps += [(KafkaPublisher, name, key) for name, key in SPLIT_PUBLISHER]
    run, found = split_run(loop, head, timer, wraps, SPLIT_STEPS, first="read")
    note = "exclusive wall time in each step of the relay's loop, summed; the wrappers add about "
    note += "a microsecond per call, so this run is slower than the timed ones"
    return {**found, "relay_thread_cpu_seconds": run.thread_cpu_seconds, "note": note}


@dataclass
class Outcome:
    """Everything measured in one run of the script."""

    measurements: list[Measurement]
    head: int
    fill_seconds: float
    value_bytes_mean: float
    topics: list[str]
    split: dict[str, Any] | None = None
    profile: list[dict[str, Any]] | None = None
    profile_path: str | None = None


def measure(run: cli.Run) -> Outcome:
    """Fill the outbox, record the relay's messages, then the interleaved rounds and extras."""
    config, console = run.config, run.console

    def fresh(tag: str) -> Settings:
        return run.settings.model_copy(update={"topic_prefix": f"{run.tag}-{tag}"})

    def retopic(settings: Settings) -> list[Message]:
        new, old = settings.topic_prefix or "", recorded_with.topic_prefix or ""
        return [(new + t.removeprefix(old), k, v, h, p) for t, k, v, h, p in messages]

    fill_seconds, head = fill_store(
        run.settings, config.events, config.events, config.fill_chunk, console
    )
    recorded_with = fresh("record")
    messages = record_messages(recorded_with, head)
    if len(messages) != head:
        raise BenchmarkError(f"the relay produced {len(messages)} messages for {head} events")
    suffixes = sorted({m[0].removeprefix(recorded_with.topic_prefix or "") for m in messages})
    value_mean = statistics.fmean(len(m[2]) for m in messages)
    # About a million long-lived objects: out of the cyclic collector's way during the runs.
    gc.collect()
    gc.freeze()
    console.log(
        f"filled in {fill_seconds:.1f} s, recorded the relay's {len(messages):,} messages "
        f"(not timed); envelopes {value_mean:.0f} bytes on average; topics *{suffixes}"
    )
    ms = [Measurement(key, label) for key, label in LABELS.items()]
    outcome = Outcome(ms, head, fill_seconds, value_mean, suffixes)
    if config.warmup:
        warm = fresh("warmup")
        create_topics(warm, [f"{warm.topic_prefix}{s}" for s in suffixes])
        run_raw(warm, retopic(warm)[: config.warmup], "w")
        console.log(f"warm-up done (the recording relay run, {config.warmup:,} raw; not timed)")

    def one(m: Measurement, round_no: int) -> tuple[float, dict[str, Any], str]:
        settings = fresh(f"r{round_no}-{m.key}")
        names = [f"{settings.topic_prefix}{s}" for s in suffixes]
        create_topics(settings, names)
        if m.key == "cqrskit":
            timed = run_relay(settings, f"bench-r{round_no}", head)
        else:
            timed = run_raw(settings, retopic(settings), f"r{round_no}")
        on_topics = messages_on(settings, names)
        # The relay also writes watermarks, and each transaction a commit marker.
        if on_topics < head:
            raise BenchmarkError(f"{m.key}: {on_topics} messages on the topics, not {head}")
        cpu = 100 * timed.thread_cpu_seconds / timed.seconds
        note = f"({timed.seconds:.2f} s, producing thread CPU {cpu:.0f}%)"
        return timed.rate(), {**timed.figures(), "messages_on_topics": on_topics}, note

    interleaved(outcome.measurements, config.rounds, one, console)
    messages.clear()  # about a million objects, no longer needed
    gc.unfreeze()
    gc.collect()
    if config.split:
        outcome.split = measure_split(fresh("split"), head)
        console.log(f"instrumented relay run: {outcome.split['events_per_second']:,.0f} events/s")
    if config.profile:
        path = run.profile_path()
        outcome.profile = relay_loop(fresh("profile"), "bench-profile")[1].profiled(path, head)
        outcome.profile_path = str(path)
        console.log(f"profiled relay run saved to {path}")
    return outcome


def print_tables(run: cli.Run, outcome: Outcome, found: Sequence[Any]) -> None:
    """The rounds table, then the relay's time split and profile if measured."""
    report.rounds_table(
        run.console,
        f"Outbox to Kafka (acks=all): {outcome.head:,} events per run, "
        f"{run.config.rounds} interleaved rounds, fresh topics each",
        outcome.measurements,
        [
            *report.rate_columns(),
            *report.first_columns("first ack"),
            ("thread CPU", report.share("thread_cpu_seconds")),
            ("process CPU", report.share("process_cpu_seconds")),
            *report.ratio_columns(found),
        ],
    )
    run.console.print(
        "ratio = events/s / the baseline's events/s; compare ratios within one run, not "
        "absolute figures across runs. first ack: from the start to the first acknowledged "
        "page; events/s after it: the rest of the events over the rest of the time. thread "
        "CPU: the Python thread that reads, encodes and produces (the relay's, or the "
        "baseline's loop); process CPU adds librdkafka's threads (100% = one core)."
    )
    if split := outcome.split:
        cpu = 100 * split["relay_thread_cpu_seconds"] / split["seconds"]
        report.steps_table(
            run.console,
            f"Where the relay's time goes (one instrumented run, "
            f"{split['events_per_second']:,.0f} events/s, relay thread CPU {cpu:.0f}%)",
            split["steps"],
            outcome.head,
        )
    if outcome.profile:
        report.profile_table(run.console, "cProfile of the relay thread", outcome.profile, 15)


def save_chart(path: Path, run: cli.Run, outcome: Outcome, found: Sequence[Any]) -> None:
    """Bars of median events/s (whiskers: min and max), and the relay's time split."""
    by_variant = {r.variant: r for r in found}

    def label(m: Measurement) -> str:
        ratio = by_variant.get(m.key)
        return f"{m.median:,.0f}\n" + (
            f"{ratio.ratio_of_medians:.2f}x baseline" if ratio else "baseline"
        )

    title = (
        "Outbox to Kafka, acks=all: cqrskit relay vs its own producer fed directly\n"
        f"{outcome.head:,} events per run x {run.config.rounds} interleaved rounds, "
        f"{run.versions()}, run {run.stamp}\n"
        "bar: median; whiskers: min and max; label: median and ratio to the baseline"
    )
    ms = outcome.measurements
    colours = [COLOURS[m.key] for m in ms]
    report.rounds_chart(
        path, (10, 5.5), outcome.split, "relay", ms, colours, label, title, headroom=1.18
    )


OPTIONS = [
    cli.Opt("--events", 200_000, "events in the outbox (each run sends all)", 50_000, 1),
    cli.Opt("--rounds", 3, "interleaved rounds per variant", least=1),
    cli.Opt("--warmup", 10_000, "events the baseline sends untimed first", least=0),
    cli.Opt("--fill-chunk", 2000, "new orders saved per transaction", least=1),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and save the JSON and the chart."""
    config = cli.parse(__doc__, "50000 events instead of 200000", OPTIONS, argv, split="relay")
    run = cli.Run.start("relay", config, 140, ("postgres", "kafka"), own=["schema"])
    settings = run.settings
    run.log(
        f"{config.events:,} events x {config.rounds} rounds per variant; relay pages of "
        f"{settings.relay_page_size}, {settings.relay_pages_in_flight} in flight, "
        f"{settings.topic_partitions} partitions"
    )
    with run.cleaning(topics=True), fresh_schemas(settings):
        outcome = measure(run)
    found = ratios(outcome.measurements, [("cqrskit", "raw")])
    print_tables(run, outcome, found)
    run.save(
        {
            **NOTES,
            "envelope_bytes_mean": outcome.value_bytes_mean,
            "topics": outcome.topics,
            **{k: getattr(settings, k) for k in SETTINGS},
            "fill_seconds_not_timed": outcome.fill_seconds,
        },
        lambda path: save_chart(path, run, outcome, found),
        variants=report.variant_rows(outcome.measurements),
        ratios=[asdict(r) for r in found],
        relay_time_split=outcome.split,
        relay_profile_top=outcome.profile,
        relay_profile_file=outcome.profile_path,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
