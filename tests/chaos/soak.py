"""Soak: a steady command rate for a long while; memory must stay flat, lag bounded.

The relay and one worker (two projections) run as processes while a stream
sends commands at a fixed rate. Every five seconds the soak samples each
process's resident memory (from /proc) and the lag of the relay and of the
projections. It fails if memory keeps growing: after a warm-up (the first
fifth of the run), the least-squares slope of each process's memory over the
remaining samples, projected over an hour, must stay under 10% of its
median. It saves the samples (JSON) and a plot of memory and lag over time
(PNG) under bench/results/.

    python -m tests.chaos.soak --minutes 10 --rate 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

from cqrskit import CqrskitError
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters.elasticsearch.checkpoints import ElasticsearchCheckpointReader
from cqrskit.adapters.postgres.outbox import read_status
from cqrskit.adapters.postgres.reader import store_head
from cqrskit.queries import applied_position
from cqrskit.topology import IndexNames
from examples.shop.demo import clean_up
from tests.chaos.run import PROJECTIONS, ROOT, Chaos, Stream, say
from tests.processes import proc_status_kb


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    found = proc_status_kb(pid, "VmRSS")
    if "VmRSS" not in found:
        raise RuntimeError(f"no VmRSS for process {pid}")
    return found["VmRSS"] / 1024


def growth_per_hour(times: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``times`` (seconds), per hour."""
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return 0.0
    slope = sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / spread
    return slope * 3600


def sample_until(chaos: Chaos, stream: Stream, minutes: float) -> list[dict[str, float]]:
    """Sample memory and lag every five seconds for ``minutes``."""
    settings = chaos.settings
    relay, worker = chaos.relay.proc, chaos.worker.proc
    assert relay is not None
    assert worker is not None
    samples: list[dict[str, float]] = []
    es = es_backend.client(settings)
    names = IndexNames.of(settings)
    checkpoints = ElasticsearchCheckpointReader(es, names.checkpoints_index)
    started = time.monotonic()
    try:
        while time.monotonic() - started < minutes * 60:
            time.sleep(5)  # the sampling interval
            if stream.error is not None:
                raise stream.error
            try:
                head = store_head(settings, "shop")
                # Read after the head: either may have moved past it meanwhile.
                relay_lag = max(0, head - read_status(settings, "shop").position)
                applied = min(applied_position(checkpoints, names, p) for p in PROJECTIONS)
                worker_lag = max(0, head - applied)
            except CqrskitError:
                continue
            sample = {
                "t": round(time.monotonic() - started, 1),
                "relay_mb": rss_mb(relay.pid),
                "worker_mb": rss_mb(worker.pid),
                "relay_lag": relay_lag,
                "worker_lag": worker_lag,
                "accepted": stream.ledger.accepted,
            }
            samples.append(sample)
            say(
                f"{sample['t']:>6.0f}s  relay {sample['relay_mb']:.0f} MB  worker "
                f"{sample['worker_mb']:.0f} MB  lag {relay_lag}/{worker_lag} events  "
                f"{stream.ledger.accepted} commands"
            )
    finally:
        es.close()
    return samples


def verdicts(samples: list[dict[str, float]]) -> dict[str, dict[str, float | bool]]:
    """Per process: median, peak, growth per hour after the warm-up, and whether it is flat."""
    steady = samples[len(samples) // 5 :]
    found: dict[str, dict[str, float | bool]] = {}
    for process in ("relay_mb", "worker_mb"):
        values = [s[process] for s in steady]
        growth = growth_per_hour([s["t"] for s in steady], values)
        median = statistics.median(values)
        found[process] = {
            "median_mb": round(median, 1),
            "peak_mb": round(max(s[process] for s in samples), 1),
            "growth_mb_per_hour": round(growth, 1),
            "flat": growth < 0.10 * median,
        }
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=100.0, help="commands per second")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    chaos = Chaos(argparse.Namespace(short=True, rate=args.rate, hold=0, keep=args.keep))
    chaos.prepare()
    stream = Stream(chaos.settings, chaos.items, args.rate)
    stream.start()
    try:
        samples = sample_until(chaos, stream, args.minutes)
    finally:
        stream.stopping.set()
        stream.join(timeout=60)
        chaos.relay.stop()
        chaos.worker.stop()
    if not samples:
        say("no samples taken")
        return 1
    memory = verdicts(samples)
    report = {
        "minutes": args.minutes,
        "rate": args.rate,
        "achieved_rate": round(samples[-1]["accepted"] / samples[-1]["t"], 1),
        "memory": memory,
        "max_lag_events": max(max(s["relay_lag"], s["worker_lag"]) for s in samples),
        "samples": samples,
    }
    out = ROOT / "bench" / "results" / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    plot(samples, out.with_suffix(".png"), args)
    say(f"memory: {json.dumps(memory)}; saved {out.relative_to(ROOT)}.json and .png")
    if not args.keep:
        clean_up(chaos.settings)
    return 0 if all(v["flat"] for v in memory.values()) else 1


def plot(samples: list[dict[str, float]], path: Path, args: argparse.Namespace) -> None:
    minutes = [s["t"] / 60 for s in samples]
    figure, (memory, lag) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    memory.plot(minutes, [s["relay_mb"] for s in samples], label="relay")
    memory.plot(minutes, [s["worker_mb"] for s in samples], label="worker (2 projections)")
    memory.set_ylabel("resident memory (MB)")
    memory.set_ylim(bottom=0)
    memory.legend()
    lag.plot(minutes, [s["relay_lag"] for s in samples], label="relay")
    lag.plot(minutes, [s["worker_lag"] for s in samples], label="slowest projection")
    lag.set_ylabel("lag (events)")
    lag.set_xlabel("minutes")
    lag.legend()
    figure.suptitle(f"soak: {args.rate:.0f} commands/s for {args.minutes:.0f} minutes")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
