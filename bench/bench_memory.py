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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _kit import cli, report
from _kit.harness import ProcessPipeline, wait_until
from _kit.machine import pipeline_settings
from _kit.measure import RUN_TIMEOUT, BenchmarkError, spread
from _kit.product import Runtime, read_status
from _kit.stack import APP_NAME, fill_store

from cqrskit import ServiceUnavailable
from projections.customers import CustomerOrdersProjection

#: The target: each process under this many MB (10^6 bytes) resident at its peak.
TARGET_MB = 200.0
#: Each process: its command line, and what it is called in the tables and charts.
PROCESSES = {
    "relay": (("relay", "run"), "cqrskit relay run"),
    "worker": (
        ("projections", "run", "customer_orders"),
        "cqrskit projections run customer_orders",
    ),
}
NOTES = {
    "what": "separate processes, not the threads of bench_relay.py and bench_projections.py: "
    "cqrskit relay run drains a pre-filled outbox (workload 2), then cqrskit projections run "
    "customer_orders applies it from Kafka (workload 3)",
    "sampling": "/proc/<pid>/status every 100 ms; peak = VmHWM, the kernel's own peak",
    "mb": "10^6 bytes",
}


def measure_round(run: cli.Run, round_no: int, logs: Path) -> dict[str, Any]:
    """Fill a fresh store; drain it with a relay process, then apply it with a worker process."""
    config, console = run.config, run.console
    pipeline = ProcessPipeline(f"bench-mem-{run.stamp.lower()}-r{round_no}", logs)
    settings, projection = pipeline.settings, CustomerOrdersProjection()

    def applied() -> bool:
        try:
            status = Runtime(settings).projection_status(APP_NAME, projection)
        except ServiceUnavailable:
            return False  # the index is being created
        return status.position >= head and status.lag == 0

    def relayed() -> bool:
        return read_status(settings, APP_NAME).position >= head

    done: dict[str, tuple[Callable[[], bool], str, float]] = {
        "relay": (relayed, "the relay process to publish the store", 0.1),
        "worker": (applied, "the worker process to apply the store", 0.25),
    }
    result: dict[str, Any] = {"round": round_no}
    try:
        pipeline.cli("db", "init")
        fill, head = fill_store(
            settings, config.events, config.customers, config.fill_chunk, console
        )
        result["fill_seconds_not_timed"] = fill
        for name, (command, _label) in PROCESSES.items():
            process = pipeline.start(name, *command, metrics=False)
            started = time.perf_counter()
            wait_until(done[name][0], RUN_TIMEOUT, done[name][1], interval=done[name][2])
            seconds = time.perf_counter() - started
            result[name] = entry = {**pipeline.stop(process), "seconds": seconds}
            entry["events_per_second_as_process"] = head / seconds
            if entry["exit_code"] != 0:
                raise BenchmarkError(f"the {name} exited with {entry['exit_code']}")
            console.log(
                f"round {round_no}: {name} peak RSS {entry['memory']['peak_rss_mb']:.0f} MB, "
                f"{head:,} events in {seconds:.1f} s ({head / seconds:,.0f} events/s, as a "
                "process, including its start)"
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


def save_chart(path: Path, run: cli.Run, rounds: Sequence[dict[str, Any]]) -> None:
    """Resident memory over time of each process, every round."""
    made = report.figure(10, 4.5)
    axes_by_name = dict(zip(PROCESSES, made.subplots(1, 2, sharey=True), strict=True))
    for name, axes in axes_by_name.items():
        for r in rounds:
            timeline = r[name]["memory"]["timeline_mb"]
            xs, ys = [t for t, _ in timeline], [mb for _, mb in timeline]
            axes.plot(xs, ys, label=f"round {r['round']}")
        axes.axhline(TARGET_MB, color="#d62728", linestyle="--", linewidth=1)
        axes.set_xlabel("seconds since the process started")
        axes.set_title(PROCESSES[name][1], fontsize=9)
        axes.legend(fontsize=7)
    axes_by_name["relay"].set_ylabel("resident memory (VmRSS), MB")
    made.suptitle(
        f"Memory of the relay and a worker as processes, {run.config.events:,} events; dashed: "
        f"target {TARGET_MB:.0f} MB; {run.machine['nproc']} CPUs, Python {run.machine['python']}",
        fontsize=9,
    )
    report.save_figure(made, path)


OPTIONS = [
    cli.Opt("--events", 200_000, "Order.Placed events in the store", 50_000, 1),
    cli.Opt("--customers", 1000, "distinct customers", least=1),
    cli.Opt("--rounds", 2, "rounds, each on a fresh store", 1, 1),
    cli.Opt("--fill-chunk", 2000, "orders per transaction", least=1),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table and save the JSON and the chart."""
    config = cli.parse(__doc__, "50000 events instead of 200000", OPTIONS, argv)
    run = cli.Run.start("memory", config, 130)
    run.log(
        f"{config.events:,} events, {config.rounds} round(s): relay process, then worker "
        "process; memory sampled every 100 ms"
    )
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as logs:
        rounds = [measure_round(run, n, Path(logs)) for n in range(1, config.rounds + 1)]
    summary = summarise(rounds)
    report.table(
        run.console,
        f"Peak resident memory, {config.events:,} events, {config.rounds} round(s) "
        "(MB = 10^6 bytes)",
        "process | peak RSS median | min - max | RSS at the end | events/s as a process | "
        f"target < {TARGET_MB:.0f} MB",
        (
            [
                PROCESSES[name][1],
                f"{entry['peak_rss_mb']['median']:.0f}",
                f"{entry['peak_rss_mb']['min']:.0f} - {entry['peak_rss_mb']['max']:.0f}",
                f"{entry['last_rss_mb']:.0f}",
                f"{entry['events_per_second_as_process']['median']:,.0f}",
                "met" if entry["met"] else "missed",
            ]
            for name, entry in summary.items()
        ),
    )
    run.save(
        NOTES,
        lambda path: save_chart(path, run, rounds),
        settings=pipeline_settings(run.settings),
        rounds=rounds,
        summary=summary,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
