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
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from _kit import cli
from _kit.cli import Config
from _kit.machine import machine_info
from _kit.measure import (
    Measurement,
    Ratio,
    StepTimer,
    Timed,
    interleaved,
    profiled,
    ratios,
    split,
)
from _kit.product import (
    KafkaPublisher,
    PostgresOutbox,
    Seal,
    read_status,
    relay_module,
)
from _kit.report import (
    profile_table,
    rate_cells,
    ratio_cells,
    rounds_chart,
    steps_table,
    table,
    variant_rows,
)
from _kit.stack import (
    APP_NAME,
    clean_up,
    create_topics,
    fill_store,
    fresh_schemas,
    messages_on,
    relay_loop,
)

from cqrskit import Settings

#: Give up on one timed run after this long.
RUN_TIMEOUT = 900.0
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

#: One message as the relay produced it: topic, key, value, headers, partition.
Message = tuple[str, bytes, bytes, list[tuple[str, str | bytes | None]], int | None]


class BenchmarkError(RuntimeError):
    """A run did not deliver exactly the events of the store."""


# --- the two sides --------------------------------------------------------------


def run_relay(settings: Settings, relay_name: str, head: int, **until: Any) -> Timed:
    """One timed relay run from nothing published to ``head`` recorded."""
    _relay, loop = relay_loop(settings, relay_name)
    run = loop.until(head, RUN_TIMEOUT, **until)
    status = read_status(settings, APP_NAME, relay_name)
    if status.position < head:
        raise BenchmarkError(f"relay recorded {status.position}, expected {head}")
    return run


def record_messages(settings: Settings, head: int) -> list[Message]:
    """Run the relay once (untimed) and keep every event message it produced."""
    sent: list[Message] = []
    produce = KafkaPublisher.produce

    def recording(
        publisher: KafkaPublisher,
        topic: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]],
        *,
        partition: int | None = None,
    ) -> None:
        sent.append((topic, key, value, headers, partition))
        produce(publisher, topic, key, value, headers, partition=partition)

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


# --- where the relay's time goes (an untimed, instrumented run) -------------------


def measure_split(settings: Settings, head: int) -> dict[str, Any]:
    """One relay run with every step timed; untimed as a benchmark (the wrapping costs).

    The relay's envelope encoder is found by :func:`_kit.product.relay_module`.
    """
    timer = StepTimer()
    relay, loop = relay_loop(settings, "bench-split")
    outbox: PostgresOutbox = relay.outbox
    outbox.read = timer.wrap("read", outbox.read)  # type: ignore[method-assign]
    outbox.record = timer.wrap("record", outbox.record)  # type: ignore[method-assign]
    outbox.heartbeat = timer.wrap("record", outbox.heartbeat)  # type: ignore[method-assign]
    snapshot: dict[str, Any] = {}
    with ExitStack() as patches:
        for owner, name, key in (
            (relay_module(), "encode", "encode"),
            (Seal, "event", "seal"),
            (KafkaPublisher, "produce", "produce"),
            (KafkaPublisher, "poll", "poll"),
            (KafkaPublisher, "commit", "commit"),
            (KafkaPublisher, "publish_watermark", "watermark"),
        ):
            wrapped = timer.wrap(key, getattr(owner, name))
            patches.enter_context(mock.patch.object(owner, name, wrapped))
        started = time.perf_counter()
        run = loop.until(
            head, RUN_TIMEOUT, on_reached=lambda: snapshot.update(timer.seconds, calls=timer.calls)
        )
    calls = snapshot.pop("calls")
    steps = dict(snapshot)
    steps["start"] = timer.first.get("read", started) - started
    steps["other"] = run.seconds - sum(steps.values())
    return {
        "seconds": run.seconds,
        "events_per_second": head / run.seconds,
        "relay_thread_cpu_seconds": run.thread_cpu_seconds,
        "process_cpu_seconds": run.process_cpu_seconds,
        "steps": split(steps, SPLIT_STEPS, run.seconds),
        "calls": dict(calls),
        "note": "exclusive wall time in each step of the relay's loop, summed; the wrappers "
        "add about a microsecond per call, so this run is slower than the timed ones",
    }


# --- the run --------------------------------------------------------------------


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


def retopic(messages: Sequence[Message], prefix: str, settings: Settings) -> list[Message]:
    """The messages with their topics under ``settings.topic_prefix`` instead of ``prefix``."""
    new = settings.topic_prefix or ""
    return [(new + t.removeprefix(prefix), k, v, h, p) for t, k, v, h, p in messages]


def measure(settings: Settings, config: Config, session: cli.Session) -> Outcome:
    """Fill the outbox, record the relay's messages, then the interleaved rounds."""
    console, base = session.console, session.tag

    def fresh(tag: str) -> Settings:
        return settings.model_copy(update={"topic_prefix": f"{base}-{tag}"})

    fill_seconds, head = fill_store(
        settings, config.events, config.events, config.fill_chunk, console
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
    outcome = Outcome(
        [Measurement(key, LABELS[key]) for key in LABELS], head, fill_seconds, value_mean, suffixes
    )
    if config.warmup:
        warm = fresh("warmup")
        create_topics(warm, [f"{warm.topic_prefix}{s}" for s in suffixes])
        run_raw(
            warm, retopic(messages, recorded_with.topic_prefix or "", warm)[: config.warmup], "w"
        )
        console.log(f"warm-up done (the recording relay run, {config.warmup:,} raw; not timed)")

    def one(m: Measurement, round_no: int) -> tuple[float, dict[str, Any], str]:
        run_settings = fresh(f"r{round_no}-{m.key}")
        names = [f"{run_settings.topic_prefix}{s}" for s in suffixes]
        create_topics(run_settings, names)
        if m.key == "cqrskit":
            run = run_relay(run_settings, f"bench-r{round_no}", head)
        else:
            mine = retopic(messages, recorded_with.topic_prefix or "", run_settings)
            run = run_raw(run_settings, mine, f"r{round_no}")
        on_topics = messages_on(run_settings, names)
        # The relay also writes watermarks, and each transaction a commit marker.
        if on_topics < head:
            raise BenchmarkError(f"{m.key}: {on_topics} messages on the topics, not {head}")
        cpu = 100 * run.thread_cpu_seconds / run.seconds
        note = f"({run.seconds:.2f} s, producing thread CPU {cpu:.0f}%)"
        return run.rate(), {**run.figures(), "messages_on_topics": on_topics}, note

    interleaved(outcome.measurements, config.rounds, one, console)
    messages.clear()  # about a million objects, no longer needed
    gc.unfreeze()
    gc.collect()
    extras(outcome, config, fresh, session)
    return outcome


def extras(
    outcome: Outcome, config: Config, fresh: Callable[[str], Settings], session: cli.Session
) -> None:
    """The untimed instrumented run and, if asked, the profiled one."""
    head, console = outcome.head, session.console
    if config.split:
        outcome.split = measure_split(fresh("split"), head)
        console.log(f"instrumented relay run: {outcome.split['events_per_second']:,.0f} events/s")
    if config.profile:
        path = session.profile_path()
        wrap, rows = profiled(path)
        _relay, loop = relay_loop(fresh("profile"), "bench-profile")
        loop.run = wrap(loop.run)
        loop.until(head, RUN_TIMEOUT)
        outcome.profile, outcome.profile_path = rows, str(path)
        console.log(f"profiled relay run saved to {path}")


# --- output ---------------------------------------------------------------------


def print_tables(session: cli.Session, outcome: Outcome, found: Sequence[Ratio]) -> None:
    """The rounds table, then the relay's time split and profile if measured."""
    by_variant = {r.variant: r for r in found}

    def share(m: Measurement, name: str) -> str:
        return f"{statistics.median(100 * r[name] / r['seconds'] for r in m.rounds):.0f}%"

    rows = []
    for m in outcome.measurements:
        first, after = m.median_of("first_seconds"), m.median_of("events_per_second_after_first")
        rows.append(
            [
                m.label,
                *rate_cells(m),
                f"{m.median_of('seconds'):.2f}",
                f"{1000 * first:.0f} ms" if first else "-",
                f"{after:,.0f}" if after else "-",
                share(m, "thread_cpu_seconds"),
                share(m, "process_cpu_seconds"),
                *ratio_cells(by_variant.get(m.key)),
            ]
        )
    table(
        session.console,
        f"Outbox to Kafka (acks=all): {outcome.head:,} events per run, "
        f"{len(outcome.measurements[0].values)} interleaved rounds, fresh topics each",
        "variant | median events/s | min - max | spread | median s | first ack | "
        "events/s after it | thread CPU | process CPU | vs baseline | per-round ratios",
        rows,
    )
    session.console.print(
        "ratio = events/s / the baseline's events/s; compare ratios within one run, not "
        "absolute figures across runs. first ack: from the start to the first acknowledged "
        "page; events/s after it: the rest of the events over the rest of the time. thread "
        "CPU: the Python thread that reads, encodes and produces (the relay's, or the "
        "baseline's loop); process CPU adds librdkafka's threads (100% = one core)."
    )
    if outcome.split:
        cpu = outcome.split["relay_thread_cpu_seconds"] / outcome.split["seconds"]
        steps_table(
            session.console,
            f"Where the relay's time goes (one instrumented run, "
            f"{outcome.split['events_per_second']:,.0f} events/s, relay thread CPU "
            f"{100 * cpu:.0f}%)",
            outcome.split["steps"],
            outcome.head,
        )
    if outcome.profile:
        profile_table(session.console, "cProfile of the relay thread", outcome.profile, 15)


def save_chart(path: Path, outcome: Outcome, found: Sequence[Ratio], title: str) -> None:
    """Bars of median events/s (whiskers: min and max), and the relay's time split."""
    by_variant = {r.variant: r for r in found}
    split = outcome.split and (
        outcome.split["steps"],
        "seconds (one instrumented relay run)",
        "Where the relay's wall time goes "
        f"({outcome.split['events_per_second']:,.0f} events/s with the timers on)",
    )

    def label(m: Measurement) -> str:
        ratio = by_variant.get(m.key)
        return f"{m.median:,.0f}\n" + (
            f"{ratio.ratio_of_medians:.2f}x baseline" if ratio else "baseline"
        )

    ms = outcome.measurements
    rounds_chart(
        path, (10, 5.5), split, ms, [COLOURS[m.key] for m in ms], label, title, headroom=1.18
    )


# --- entry point ----------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Command-line options."""
    return cli.parse(
        __doc__,
        "50000 events instead of 200000",
        [
            cli.Opt("--events", 200_000, "events in the outbox (each run sends all)", 50_000, 1),
            cli.Opt("--rounds", 3, "interleaved rounds per variant", least=1),
            cli.Opt("--warmup", 10_000, "events the baseline sends untimed first", least=0),
            cli.Opt("--fill-chunk", 2000, "new orders saved per transaction", least=1),
        ],
        argv,
        split="relay",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and save the JSON and the chart."""
    config = parse_args(argv)
    session = cli.Session.begin("relay", config.results, 140)
    settings = Settings.load().model_copy(update={"postgres_schema": session.tag.replace("-", "_")})
    machine = machine_info(settings, services=("postgres", "kafka"))
    session.console.log(
        f"PostgreSQL {machine['postgres']['server_version']} at {settings.postgres_address()}, "
        f"Kafka {machine['kafka']['version']} at {settings.kafka_bootstrap}, "
        f"{machine['nproc']} CPUs, Python {machine['python']}; {config.events:,} events x "
        f"{config.rounds} rounds per variant; relay pages of {settings.relay_page_size}, "
        f"{settings.relay_pages_in_flight} in flight, {settings.topic_partitions} partitions"
    )
    try:
        with fresh_schemas(settings):
            outcome = measure(settings, config, session)
    finally:
        clean_up(settings, session.console, topics=session.tag)
    found = ratios(outcome.measurements, [("cqrskit", "raw")])
    print_tables(session, outcome, found)
    title = (
        "Outbox to Kafka, acks=all: cqrskit relay vs its own producer fed directly\n"
        f"{outcome.head:,} events per run x {config.rounds} interleaved rounds, PostgreSQL "
        f"{machine['postgres']['server_version']}, Kafka {machine['kafka']['version']}, "
        f"{machine['nproc']} CPUs, run {session.stamp}\n"
        "bar: median; whiskers: min and max; label: median and ratio to the baseline"
    )
    session.save(
        {
            **vars(config),
            "event": "Order.Placed (one new Order per event, one line)",
            "envelope_bytes_mean": outcome.value_bytes_mean,
            "topics": outcome.topics,
            "relay_page_size": settings.relay_page_size,
            "relay_pages_in_flight": settings.relay_pages_in_flight,
            "relay_compression": settings.relay_compression,
            "topic_partitions": settings.topic_partitions,
            "topic_replication": settings.topic_replication,
            "fill_seconds_not_timed": outcome.fill_seconds,
            "cqrskit_timed": "OutboxRelay.run in a thread, from thread start until "
            "relay.position (recorded after the transaction commits) == store head; polled "
            "every 5 ms",
            "raw_timed": "the relay's KafkaPublisher (its producer and settings, a transactional "
            "id of its own, fenced beforehand): from the first produce() of the relay's "
            "recorded messages to commit() returning, one transaction, poll(0) per page",
            "topics_per_run": "fresh per run, created beforehand (not timed), deleted at the end",
            "clock": "time.perf_counter",
        },
        machine,
        lambda path: save_chart(path, outcome, found, title),
        variants=variant_rows(outcome.measurements),
        ratios=[asdict(r) for r in found],
        relay_time_split=outcome.split,
        relay_profile_top=outcome.profile,
        relay_profile_file=outcome.profile_path,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
