"""Memory: the peak resident memory of the relay and of a projection worker, as processes.

``cqrskit relay run`` drains a store of N ``Order.Placed`` events into Kafka,
then ``cqrskit projections run customer_orders`` applies them; each process's
``VmRSS`` and ``VmHWM`` are read every 100 ms (``bench/README.md``, "Memory").
Run from the repository root::

    .venv/bin/python bench/bench_memory.py [--quick] [--events N] [--rounds N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _kit import cli
from _kit.cli import Config
from _kit.harness import ProcessPipeline, wait_until
from _kit.machine import machine_info, pipeline_settings
from _kit.measure import spread
from _kit.product import (
    Runtime,
    read_status,
)
from _kit.report import figure, save_figure, table
from _kit.stack import APP_NAME, fill_store
from rich.console import Console

from cqrskit import ServiceUnavailable
from projections.customers import CustomerOrdersProjection

#: The target: each process under this many MB (10^6 bytes) resident at its peak.
TARGET_MB = 200.0
PROCESSES = ("relay", "worker")
RUN_TIMEOUT = 900.0


def measure_round(
    config: Config, tag: str, round_no: int, console: Console, logs: Path
) -> dict[str, Any]:
    """Fill a fresh store; drain it with a relay process, then apply it with a worker process."""
    pipeline = ProcessPipeline(f"{tag}-r{round_no}", logs)
    settings = pipeline.settings
    projection = CustomerOrdersProjection()
    result: dict[str, Any] = {"round": round_no}
    try:
        pipeline.cli("db", "init")
        fill, head = fill_store(
            settings, config.events, config.customers, config.fill_chunk, console
        )
        result["fill_seconds_not_timed"] = fill

        relay = pipeline.start("relay", "relay", "run", metrics=False)
        started = time.perf_counter()
        wait_until(
            lambda: read_status(settings, APP_NAME).position >= head,
            RUN_TIMEOUT,
            "the relay process to publish the store",
            interval=0.1,
        )
        relay_seconds = time.perf_counter() - started
        result["relay"] = {**pipeline.stop(relay), "seconds": relay_seconds}

        worker = pipeline.start("worker", "projections", "run", projection.name, metrics=False)
        started = time.perf_counter()

        def applied() -> bool:
            try:
                status = Runtime(settings).projection_status(APP_NAME, projection)
            except ServiceUnavailable:
                return False  # the index is being created
            return status.position >= head and status.lag == 0

        wait_until(applied, RUN_TIMEOUT, "the worker process to apply the store", interval=0.25)
        worker_seconds = time.perf_counter() - started
        result["worker"] = {**pipeline.stop(worker), "seconds": worker_seconds}
        for name in PROCESSES:
            entry = result[name]
            entry["events_per_second_as_process"] = head / entry["seconds"]
            if entry["exit_code"] != 0:
                raise RuntimeError(f"the {name} exited with {entry['exit_code']}")
            console.log(
                f"round {round_no}: {name} peak RSS {entry['memory']['peak_rss_mb']:.0f} MB, "
                f"{head:,} events in {entry['seconds']:.1f} s "
                f"({entry['events_per_second_as_process']:,.0f} events/s, as a process, "
                "including its start)"
            )
    finally:
        pipeline.stop_all()
        pipeline.clean_up(console, [projection.name])
    return result


def summarise(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per process: peak RSS and rate over the rounds (min, median, max) and the target."""
    found = {}
    for name in PROCESSES:
        peaks = [r[name]["memory"]["peak_rss_mb"] for r in rounds]
        found[name] = {
            "peak_rss_mb": spread(peaks),
            "events_per_second_as_process": spread(
                [r[name]["events_per_second_as_process"] for r in rounds]
            ),
            "last_rss_mb": statistics.median(r[name]["memory"]["last_rss_mb"] for r in rounds),
            "target_mb": TARGET_MB,
            "met": max(peaks) < TARGET_MB,
        }
    return found


def print_table(console: Console, summary: dict[str, Any], config: Config) -> None:
    """One row per process."""
    table(
        console,
        f"Peak resident memory, {config.events:,} events, {config.rounds} round(s) "
        "(MB = 10^6 bytes)",
        [
            "process",
            "peak RSS median",
            "min - max",
            "RSS at the end",
            "events/s as a process",
            f"target < {TARGET_MB:.0f} MB",
        ],
        (
            [
                f"cqrskit {'relay run' if name == 'relay' else 'projections run customer_orders'}",
                f"{entry['peak_rss_mb']['median']:.0f}",
                f"{entry['peak_rss_mb']['min']:.0f} - {entry['peak_rss_mb']['max']:.0f}",
                f"{entry['last_rss_mb']:.0f}",
                f"{entry['events_per_second_as_process']['median']:,.0f}",
                "met" if entry["met"] else "missed",
            ]
            for name, entry in summary.items()
        ),
    )


def save_chart(
    path: Path, rounds: Sequence[dict[str, Any]], config: Config, machine: dict[str, Any]
) -> None:
    """Resident memory over time of each process, every round."""
    made = figure(10, 4.5)
    axes_by_name = dict(zip(PROCESSES, made.subplots(1, 2, sharey=True), strict=True))
    for name, axes in axes_by_name.items():
        for r in rounds:
            timeline = r[name]["memory"]["timeline_mb"]
            axes.plot(
                [t for t, _ in timeline], [mb for _, mb in timeline], label=f"round {r['round']}"
            )
        axes.axhline(TARGET_MB, color="#d62728", linestyle="--", linewidth=1)
        axes.set_xlabel("seconds since the process started")
        axes.set_title(
            "cqrskit relay run" if name == "relay" else "cqrskit projections run customer_orders",
            fontsize=9,
        )
        axes.legend(fontsize=7)
    axes_by_name["relay"].set_ylabel("resident memory (VmRSS), MB")
    made.suptitle(
        f"Memory of the relay and a worker as processes, {config.events:,} events; "
        f"dashed: target {TARGET_MB:.0f} MB; {machine['nproc']} CPUs, Python {machine['python']}",
        fontsize=9,
    )
    save_figure(made, path)


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Command-line options."""
    return cli.parse(
        __doc__,
        "50000 events instead of 200000",
        [
            cli.Opt("--events", 200_000, "Order.Placed events in the store", 50_000, 1),
            cli.Opt("--customers", 1000, "distinct customers", least=1),
            cli.Opt("--rounds", 2, "rounds, each on a fresh store", 1, 1),
            cli.Opt("--fill-chunk", 2000, "orders per transaction", least=1),
        ],
        argv,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table and save the JSON and the chart."""
    config = parse_args(argv)
    session = cli.Session.begin("memory", config.results, 130)
    tag = f"bench-mem-{session.stamp.lower()}"
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as logs:
        probe = ProcessPipeline(tag, Path(logs))
        machine = machine_info(probe.settings)
        session.console.log(
            f"{config.events:,} events, {config.rounds} round(s): relay process, then worker "
            "process; memory sampled every 100 ms"
        )
        rounds = [
            measure_round(config, tag, n, session.console, Path(logs))
            for n in range(1, config.rounds + 1)
        ]
    summary = summarise(rounds)
    print_table(session.console, summary, config)
    session.save(
        {
            **vars(config),
            "what": "separate processes, not the threads of bench_relay.py and "
            "bench_projections.py: cqrskit relay run drains a pre-filled outbox (workload 2), "
            "then cqrskit projections run customer_orders applies it from Kafka (workload 3)",
            "sampling": "/proc/<pid>/status every 100 ms; peak = VmHWM, the kernel's own peak",
            "mb": "10^6 bytes",
        },
        machine,
        lambda path: save_chart(path, rounds, config, machine),
        settings=pipeline_settings(probe.settings),
        rounds=rounds,
        summary=summary,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
