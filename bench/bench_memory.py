"""Memory: the peak resident memory of the relay and of a projection worker, as processes.

The relay and projection benchmarks run the relay and the worker as threads
of the benchmark's own process, which also holds the messages it compares
them with; their process's memory says nothing about the relay's or the
worker's. Here the same workloads run in separate processes, as in
production: a store of N ``Order.Placed`` events (1000 customers, as in
``bench_projections.py``) is drained by ``cqrskit relay run`` into Kafka,
then applied by ``cqrskit projections run customer_orders`` into
Elasticsearch. Each process's ``/proc/<pid>/status`` is read every 100 ms:
``VmRSS`` (resident now) and ``VmHWM`` (the kernel's peak of it). Each round
has its own schema, topics and indices, removed at the end. Run from the
repository root::

    .venv/bin/python bench/bench_memory.py [--quick] [--events N] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    RESULTS_DIR,
    ProcessPipeline,
    fill_orders,
    machine_info,
    pipeline_settings,
    spread,
    utc_stamp,
    wait_until,
    wide_console,
    write_json,
)
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from cqrskit.errors import ServiceUnavailable
from cqrskit.projections import projection_status
from cqrskit.relay import read_status

# The example shop lives in examples/, which is not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from projections.customers import CustomerOrdersProjection

#: The target: each process under this many MB (10^6 bytes) resident at its peak.
TARGET_MB = 200.0
PROCESSES = ("relay", "worker")
RUN_TIMEOUT = 900.0


@dataclass(frozen=True)
class Config:
    """What one run measures."""

    events: int
    customers: int
    rounds: int
    fill_chunk: int
    quick: bool
    results: Path


def measure_round(
    config: Config, stamp: str, round_no: int, console: Console, logs: Path
) -> dict[str, Any]:
    """Fill a fresh store; drain it with a relay process, then apply it with a worker process."""
    pipeline = ProcessPipeline(f"bench-mem-{stamp.lower()}-r{round_no}", logs)
    settings = pipeline.settings
    projection = CustomerOrdersProjection()
    result: dict[str, Any] = {"round": round_no}
    try:
        pipeline.init_store()
        fill = fill_orders(settings, config, console)
        result["fill_seconds_not_timed"] = fill
        head = read_status(settings, ProcessPipeline.APP_NAME).head
        if head != config.events:
            raise RuntimeError(f"the store holds {head} events, expected {config.events}")

        relay = pipeline.start("relay", "relay", "run", metrics=False)
        started = time.perf_counter()
        wait_until(
            lambda: read_status(settings, ProcessPipeline.APP_NAME).position >= head,
            RUN_TIMEOUT,
            "the relay process to publish the store",
            interval=0.1,
        )
        relay_seconds = time.perf_counter() - started
        result["relay"] = {**relay.stop(), "seconds": relay_seconds}

        worker = pipeline.start("worker", "projections", "run", projection.name, metrics=False)
        started = time.perf_counter()

        def applied() -> bool:
            try:
                status = projection_status(settings, ProcessPipeline.APP_NAME, projection)
            except ServiceUnavailable:
                return False  # the index is being created
            return status.position >= head and status.lag == 0

        wait_until(applied, RUN_TIMEOUT, "the worker process to apply the store", interval=0.25)
        worker_seconds = time.perf_counter() - started
        result["worker"] = {**worker.stop(), "seconds": worker_seconds}
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
        pipeline.clean_up([projection.name])
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
    table = Table(
        title=(
            f"Peak resident memory, {config.events:,} events, {config.rounds} round(s) "
            "(MB = 10^6 bytes)"
        )
    )
    for column in (
        "process",
        "peak RSS median",
        "min - max",
        "RSS at the end",
        "events/s as a process",
        f"target < {TARGET_MB:.0f} MB",
    ):
        table.add_column(column, justify="left" if column == "process" else "right")
    for name, entry in summary.items():
        peak = entry["peak_rss_mb"]
        table.add_row(
            f"cqrskit {'relay run' if name == 'relay' else 'projections run customer_orders'}",
            f"{peak['median']:.0f}",
            f"{peak['min']:.0f} - {peak['max']:.0f}",
            f"{entry['last_rss_mb']:.0f}",
            f"{entry['events_per_second_as_process']['median']:,.0f}",
            "met" if entry["met"] else "missed",
        )
    console.print(table)


def save_chart(
    path: Path, rounds: Sequence[dict[str, Any]], config: Config, machine: dict[str, Any]
) -> None:
    """Resident memory over time of each process, every round."""
    figure = Figure(figsize=(10, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    axes_by_name = dict(zip(PROCESSES, figure.subplots(1, 2, sharey=True), strict=True))
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
    figure.suptitle(
        f"Memory of the relay and a worker as processes, {config.events:,} events; "
        f"dashed: target {TARGET_MB:.0f} MB; {machine['nproc']} CPUs, Python {machine['python']}",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path)


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Command-line options to a Config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="50000 events instead of 200000")
    parser.add_argument("--events", type=int, help="Order.Placed events in the store")
    parser.add_argument("--customers", type=int, default=1000, help="distinct customers")
    parser.add_argument("--rounds", type=int, help="rounds, each on a fresh store (2; 1 quick)")
    parser.add_argument("--fill-chunk", type=int, default=2000, help="orders per transaction")
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR, help="where to save the JSON and the chart"
    )
    args = parser.parse_args(argv)
    events = args.events or (50_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 2)
    if min(events, rounds, args.customers, args.fill_chunk) < 1:
        parser.error("--events, --rounds, --customers and --fill-chunk must be positive")
    return Config(events, args.customers, rounds, args.fill_chunk, args.quick, args.results)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table and save the JSON and the chart."""
    config = parse_args(argv)
    console = wide_console(130)
    started = datetime.now(UTC)
    stamp = utc_stamp(started)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as logs:
        probe = ProcessPipeline(f"bench-mem-{stamp.lower()}", Path(logs))
        machine = machine_info(probe.settings)
        console.log(
            f"{config.events:,} events, {config.rounds} round(s): relay process, then worker "
            "process; memory sampled every 100 ms"
        )
        rounds = [
            measure_round(config, stamp, n, console, Path(logs))
            for n in range(1, config.rounds + 1)
        ]
    summary = summarise(rounds)
    print_table(console, summary, config)
    document = {
        "benchmark": "memory",
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "config": {
            **asdict(config),
            "results": str(config.results),
            "what": "separate processes, not the threads of bench_relay.py and "
            "bench_projections.py: cqrskit relay run drains a pre-filled outbox (workload 2), "
            "then cqrskit projections run customer_orders applies it from Kafka (workload 3)",
            "sampling": "/proc/<pid>/status every 100 ms; peak = VmHWM, the kernel's own peak",
            "mb": "10^6 bytes",
        },
        "machine": {**machine, "load_average_at_end": list(os.getloadavg())},
        "settings": pipeline_settings(probe.settings),
        "rounds": rounds,
        "summary": summary,
    }
    json_path = config.results / f"memory-{stamp}.json"
    png_path = config.results / f"memory-{stamp}.png"
    write_json(json_path, document)
    save_chart(png_path, rounds, config, machine)
    console.print(f"saved {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
