"""The benchmark suite: every benchmark of bench/, one table of figures against targets.

Runs each ``bench_*.py`` script as a subprocess (``--quick`` with
``--quick``, plus options that keep the quick suite within a few minutes),
collects the JSON each one writes into ``bench/results/``, and writes
``bench/results/<UTC time>.json`` (``<UTC time>-quick.json`` for a quick
run) with the headline figures, their baselines, ratios and targets, the
versions and the settings that matter; a summary chart beside it; and
prints the table. ``make bench`` (``make bench QUICK=1``) runs it. Run from
the repository root::

    .venv/bin/python bench/run.py [--quick] [--only commands,e2e]
    .venv/bin/python bench/run.py --readme-from bench/results/<UTC time>.json
    .venv/bin/python bench/run.py --resummarise bench/results/<UTC time>.json

The second form writes the table of a saved summary into README.md (between
the ``bench:start`` and ``bench:end`` markers); the third reads a saved
run's headlines again from its scripts' result files (after a change to how
a figure is read); neither runs a benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from _kit import REPO_ROOT, RESULTS_DIR
from _kit.machine import machine_info, pipeline_settings
from _kit.measure import limited_by, spread
from _kit.report import figure, save_figure, table, utc_stamp, wide_console, write_json
from matplotlib.ticker import NullFormatter
from rich.console import Console

from cqrskit import Settings

README = REPO_ROOT / "README.md"
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


@dataclass(frozen=True)
class Script:
    """One benchmark script and the options it gets."""

    name: str
    file: str
    quick: tuple[str, ...]
    full: tuple[str, ...] = ()

    def arguments(self, quick: bool) -> list[str]:
        """The command line of this script."""
        return [sys.executable, str(Path(__file__).parent / self.file), *self.argv(quick)]

    def argv(self, quick: bool) -> list[str]:
        """Its options."""
        return list(self.quick if quick else self.full)


#: In the order they run. Quick options keep the quick suite near five minutes.
SCRIPTS = [
    Script("commands", "bench_commands.py", ("--quick", "--rounds", "2")),
    Script("relay", "bench_relay.py", ("--quick", "--rounds", "2")),
    Script(
        "projections",
        "bench_projections.py",
        ("--quick", "--rounds", "1", "--batch-sizes", "1000", "--events", "20000"),
    ),
    Script("rebuild", "bench_rebuild.py", ("--quick", "--rounds", "1", "--events", "50000")),
    Script(
        "queries",
        "bench_queries.py",
        ("--quick", "--rounds", "1", "--docs", "20000", "--queries", "500", "--threads", "1"),
    ),
    Script("e2e", "bench_e2e.py", ("--quick",)),
    Script("memory", "bench_memory.py", ("--quick",)),
]


@dataclass(frozen=True)
class Target:
    """A bound on a figure (``on="value"``) or on its ratio to the baseline."""

    text: str
    bound: float
    on: Literal["value", "ratio"] = "value"
    #: The figure must stay below the bound (a time, a size), not reach it.
    below: bool = False


@dataclass
class Headline:
    """One figure of one workload, with its baseline, ratio and target."""

    workload: str
    figure: str
    value: float | None
    unit: str
    runs: dict[str, float | int] | None = None
    baseline: str | None = None
    baseline_value: float | None = None
    ratio: float | None = None
    target: Target | None = None
    #: Why a missed target is missed: the stage that limits it.
    limited_by: str | None = None
    note: str | None = None
    met: bool | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        figure = self.figure_of_target()
        if self.target is not None and figure is not None:
            bound = self.target.bound
            self.met = figure < bound if self.target.below else figure >= bound
        if self.met is not False:
            self.limited_by = None

    def figure_of_target(self) -> float | None:
        """The value or the ratio, whichever the target bounds."""
        if self.target is None:
            return None
        return self.value if self.target.on == "value" else self.ratio

    def attainment(self) -> float | None:
        """The figure over its bound (the bound over it for ``below``): above 1 is met."""
        figure = self.figure_of_target()
        if self.target is None or not figure:
            return None
        return self.target.bound / figure if self.target.below else figure / self.target.bound


@dataclass
class ScriptRun:
    """One script's subprocess: how it went and what it wrote."""

    name: str
    command: str
    seconds: float
    returncode: int
    result_file: str | None
    headlines: list[Headline] = field(default_factory=list)
    error: str | None = None


# --- reading the scripts' results ----------------------------------------------------------


def variant(document: dict[str, Any], key: str) -> dict[str, Any]:
    """The variant with ``key`` in a script's result."""
    for v in document["variants"]:
        if v["key"] == key:
            return v
    raise KeyError(f"no variant {key!r} in the {document['benchmark']} result")


def runs_of(v: dict[str, Any]) -> dict[str, Any]:
    """Runs, min, median and max of a variant's events per second."""
    return {
        "runs": len(v["rounds"]),
        **{k: v[f"{k}_events_per_second"] for k in ("min", "median", "max")},
    }


def append_limit(doc: dict[str, Any], n: int) -> str:
    """What limits appends with ``n`` writers, from the run itself: the largest steps of
    the instrumented sequential batch, the group commit's appends per transaction at ``n``
    writers, and how far the library's recorder alone is from the raw commit."""
    suffix = "seq" if n == 1 else f"{n}w"
    parts = []
    split = doc.get("cqrskit_time_split")
    if split:
        parts.append(f"{limited_by(split['steps'], per=split['events'])} of a sequential append")
    mine = variant(doc, f"cqrskit-{suffix}")
    transactions = sum(r.get("transactions") or 0 for r in mine["rounds"])
    if transactions:
        per = sum(r["appends"] for r in mine["rounds"]) / transactions
        commits = mine["median_events_per_second"] / per
        parts.append(
            f"{n} writer{'s' if n > 1 else ''}: {per:.1f} appends per transaction, "
            f"{commits:,.0f} transactions/s"
        )
    es, raw = (
        variant(doc, f"{k}-{suffix}")["median_events_per_second"] for k in ("eventsourcing", "raw")
    )
    parts.append(f"eventsourcing's recorder alone {es / raw:.2f}x raw")
    return "; ".join(parts)


def commands_headlines(doc: dict[str, Any]) -> list[Headline]:
    """Append: cqrskit against raw commits, eventsourcing, and the 64-writer rate."""
    rows = []
    for n in [1, *doc["config"]["writers"]]:
        suffix = "seq" if n == 1 else f"{n}w"

        def rate(family: str, suffix: str = suffix) -> float:
            return float(variant(doc, f"{family}-{suffix}")["median_events_per_second"])

        mine = variant(doc, f"cqrskit-{suffix}")
        common = {
            "workload": f"append, {'sequential' if n == 1 else f'{n} writers'}",
            "figure": "events/s",
            "value": mine["median_events_per_second"],
            "unit": "events/s",
            "runs": runs_of(mine),
        }
        limit = append_limit(doc, n)
        target = Target("≥0.8x raw commit", 0.8, on="ratio") if n in (1, 4) else None
        rows += against_targets(
            common,
            limit,
            [
                ("raw psycopg INSERT+COMMIT", rate("raw"), target),
                ("eventsourcing", rate("eventsourcing"), None),
                ("eventsourcing, db functions", rate("eventsourcing-fn"), None),
            ],
        )
        if n == 64:
            rows += against_targets(
                common,
                limit,
                [
                    (
                        "raw, 100 rows per COMMIT (4 connections)",
                        rate("raw-batch", "4w"),
                        Target("≥20,000 events/s", 20_000),
                    )
                ],
            )
    return rows


def one_thread_rate(
    doc: dict[str, Any], key: str, workload: str, split: str, cpu: str
) -> tuple[dict[str, Any], str]:
    """A variant's events/s as a headline's fields, and what limits it: the largest steps
    of the run's instrumented run (``split``, the key of its time split), and how busy the
    thread was (``cpu``, the key of its CPU seconds)."""
    mine = variant(doc, key)
    events = doc["config"]["events"]
    steps = doc.get(split)
    limit = "no instrumented run"
    if steps:
        limit = (
            f"{limited_by(steps['steps'], per=events)} of the instrumented run; its thread on "
            f"CPU {100 * steps[cpu] / steps['seconds']:.0f}% of the wall time"
        )
    common = {
        "workload": f"{workload}, {events:,} events",
        "figure": "events/s",
        "value": mine["median_events_per_second"],
        "unit": "events/s",
        "runs": runs_of(mine),
    }
    return common, limit


def against_targets(
    common: dict[str, Any], limit: str, rows: Sequence[tuple[str, float, Target | None]]
) -> list[Headline]:
    """One figure (``common``) against each (baseline, baseline's figure, target)."""
    return [
        Headline(
            **common,
            baseline=name,
            baseline_value=base,
            ratio=common["value"] / base,
            target=target,
            limited_by=limit,
        )
        for name, base, target in rows
    ]


def relay_headlines(doc: dict[str, Any]) -> list[Headline]:
    """Relay: events/s and the ratio to the raw producer."""
    common, limit = one_thread_rate(
        doc, "cqrskit", "relay", "relay_time_split", "relay_thread_cpu_seconds"
    )
    base = (
        "raw: the relay's KafkaPublisher fed directly",
        variant(doc, "raw")["median_events_per_second"],
    )
    return against_targets(
        common,
        limit,
        [
            (*base, Target("≥100,000 events/s", 100_000)),
            (*base, Target("≥0.5x raw producer", 0.5, on="ratio")),
        ],
    )


def projections_headlines(doc: dict[str, Any]) -> list[Headline]:
    """Projection: the default batch (1000) against the runner and the raw bulk."""
    common, limit = one_thread_rate(
        doc, "cqrskit-b1000", "projection", "worker_time_split", "worker_thread_cpu_seconds"
    )
    bulk = ("raw ES bulk, 1000 ops/request", variant(doc, "raw-b1000")["median_events_per_second"])
    runner = variant(doc, "eventsourcing")["median_events_per_second"]
    return against_targets(
        common,
        limit,
        [
            (*bulk, Target("≥10,000 events/s", 10_000)),
            ("eventsourcing ProjectionRunner", runner, Target("≥6x ProjectionRunner", 6, "ratio")),
            (*bulk, Target("≥0.7x raw bulk", 0.7, on="ratio")),
        ],
    )


def rebuild_headlines(doc: dict[str, Any]) -> list[Headline]:
    """Rebuild: wall time, scaled to 1,000,000 events if the run had fewer."""
    mine, live = variant(doc, "rebuild"), variant(doc, "live")
    events = doc["config"]["events"]
    seconds = mine["median_seconds"]
    per_million = seconds * 1_000_000 / events
    phases = mine.get("median_phases") or {}
    steps = [
        {"step": key, "key": key, "seconds": value, "share": value / seconds}
        for key, value in phases.items()
        if key != "replay"
    ]
    limit = f"{limited_by(steps, per=events)} of the rebuild's wall time (median of rounds)"
    scale = 1_000_000 / events
    seconds_values = [r["seconds"] * scale for r in mine["rounds"]]
    return [
        Headline(
            workload=f"rebuild, {events:,} events",
            figure="wall s per 1M events" if events != 1_000_000 else "wall s",
            value=per_million,
            unit="s",
            runs=spread(seconds_values),
            baseline="live worker from Kafka, same events",
            baseline_value=live["median_seconds"] * 1_000_000 / events,
            ratio=live["median_seconds"] / seconds,
            target=Target("1M events in <100 s", 100, below=True),
            limited_by=limit,
            note=None
            if events == 1_000_000
            else f"scaled to 1M from {seconds:.1f} s for {events:,} events",
        )
    ]


def queries_headlines(doc: dict[str, Any]) -> list[Headline]:
    """Queries (no target): queries per second against the raw client's."""
    ratios = {(r["variant"], r["baseline"]): r for r in doc["ratios"]}
    rows = []
    for key, base, label in (
        ("cqrskit-get", "raw-get", "query, get by id"),
        ("cqrskit-search", "raw-search", "query, search"),
    ):
        mine, raw = variant(doc, key), variant(doc, base)
        qps = [r["qps"] for r in mine["sequential_rounds"]]
        rows.append(
            Headline(
                workload=label,
                figure="queries/s, 1 thread",
                value=mine["median_qps"],
                unit="q/s",
                runs=spread(qps),
                baseline=raw["label"],
                baseline_value=raw["median_qps"],
                ratio=ratios[(key, base)]["qps"],
            )
        )
    return rows


def e2e_headlines(doc: dict[str, Any]) -> list[Headline]:
    """End to end: p99 from accepted to searchable per rate; the target at 500 cmd/s."""
    rows = []
    for row in doc["summary"]:
        p99 = row["p99_ms"]
        phases = [p for p in doc["phases"] if p["label"] == row["label"]]
        means = phases[-1]["limited_by"].get("means_ms") or {}
        is_target = row["target_rate"] == 500 and row["refresh_interval"].startswith("1s")
        value = p99["median"] if p99 else None
        stage_text = ", ".join(f"{k} {v:.0f} ms" for k, v in means.items())
        rows.append(
            Headline(
                workload=f"e2e, {row['label']}, achieved {row['achieved_rate']:,.0f}/s",
                figure="p99 accepted→searchable",
                value=value,
                unit="ms",
                runs={"runs": row["runs"], **p99} if p99 else None,
                baseline=None,
                target=Target("p99 <250 ms", 250, below=True) if is_target else None,
                limited_by=stage_limit(means, row["refresh_interval"]),
                note=(
                    f"p50 "
                    f"{row['p50_ms']['median']:.0f} ms, p95 {row['p95_ms']['median']:.0f} ms; "
                    f"{row['samples']} samples"
                    + (f", {row['lost']} lost" if row["lost"] else "")
                    + (f"; stage means {stage_text}" if stage_text else "")
                ),
            )
        )
    return rows


def stage_limit(means: dict[str, float], refresh: str) -> str:
    """The stage with the largest mean of the worker's own histograms, and its share."""
    if not means:
        return "no stage measured"
    stage = max(means, key=lambda k: means[k])
    return (
        f"{stage} {100 * means[stage] / sum(means.values()):.0f}% of the stages' means ("
        + ", ".join(f"{k} {v:.0f} ms" for k, v in means.items())
        + f"); read model refresh_interval {refresh}"
    )


def memory_headlines(doc: dict[str, Any]) -> list[Headline]:
    """Memory: peak RSS of the relay and the worker processes."""
    rows = []
    for name, label in (("relay", "relay process"), ("worker", "worker process")):
        entry = doc["summary"][name]
        peak = entry["peak_rss_mb"]
        rises = [time_to_peak(r[name]["memory"]["timeline_mb"]) for r in doc["rounds"]]
        seconds = max(r[name]["seconds"] for r in doc["rounds"])
        first = max(r[name]["memory"]["first_rss_mb"] or 0 for r in doc["rounds"])
        limit = (
            f"{first:.0f} MB resident at the first sample after start, {peak['max']:.0f} MB at "
            f"the peak; 90% of the peak {max(rises):.1f} s into a {seconds:.0f} s run"
        )
        rows.append(
            Headline(
                workload=f"memory, {label}, {doc['config']['events']:,} events",
                figure="peak RSS",
                value=peak["max"],
                unit="MB",
                runs=peak,
                target=Target("<200 MB", 200, below=True),
                limited_by=limit,
                note=f"max of the rounds; RSS at the end {entry['last_rss_mb']:.0f} MB",
            )
        )
    return rows


def time_to_peak(timeline: Sequence[Sequence[float]]) -> float:
    """Seconds from the start until resident memory first reaches 90% of its maximum."""
    top = max(mb for _, mb in timeline)
    return next(t for t, mb in timeline if mb >= 0.9 * top)


HEADLINES: dict[str, Callable[[dict[str, Any]], list[Headline]]] = {
    "commands": commands_headlines,
    "relay": relay_headlines,
    "projections": projections_headlines,
    "rebuild": rebuild_headlines,
    "queries": queries_headlines,
    "e2e": e2e_headlines,
    "memory": memory_headlines,
}


# --- running ------------------------------------------------------------------------------


def run_script(script: Script, quick: bool, results: Path, console: Console) -> ScriptRun:
    """Run one script to its end (its output goes straight through); read what it wrote."""
    pattern = f"{script.name}-*.json"
    before = set(results.glob(pattern))
    command = script.arguments(quick)
    shown = shlex.join(["bench/" + script.file, *script.argv(quick)])
    console.rule(f"[bold]{script.name}[/bold]: {shown}")
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO_ROOT, check=False)
    seconds = time.monotonic() - started
    written = sorted(set(results.glob(pattern)) - before)
    run = ScriptRun(
        script.name,
        shown,
        seconds,
        done.returncode,
        str(written[-1].relative_to(REPO_ROOT)) if written else None,
    )
    if done.returncode != 0 or not written:
        run.error = f"exit code {done.returncode}, result file {'found' if written else 'missing'}"
        return run
    try:
        run.headlines = HEADLINES[script.name](json.loads(written[-1].read_text()))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        run.error = f"could not read the result: {type(exc).__name__}: {exc}"
    return run


def fmt(value: float | None, unit: str = "") -> str:
    """A figure for the table."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
    return f"{text} {unit}".rstrip()


def met_text(met: bool | None) -> str:
    """met / MISSED / blank."""
    return "" if met is None else ("met" if met else "missed")


def print_table(console: Console, runs: Sequence[ScriptRun], title: str) -> None:
    """The headline table: workload, figure, baseline, ratio, target, met."""
    rows = []
    for run in runs:
        if run.error:
            rows.append([run.name, f"[red]failed: {run.error}[/red]", "", "", "", "", "", ""])
        for h in run.headlines:
            colour = "" if h.met is None else ("green" if h.met else "red")
            met = met_text(h.met).upper() if h.met is False else met_text(h.met)
            rows.append(
                [
                    h.workload,
                    fmt(h.value, h.unit),
                    f"{h.runs['runs']} ({fmt(h.runs['min'])}-{fmt(h.runs['max'])})"
                    if h.runs
                    else "",
                    h.baseline or "",
                    fmt(h.baseline_value, h.unit),
                    f"{h.ratio:.2f}x" if h.ratio is not None else "",
                    h.target.text if h.target else "",
                    f"[{colour}]{met}[/{colour}]" if colour else "",
                ]
            )
    table(
        console,
        title,
        "workload | cqrskit | runs (min-max) | baseline | baseline figure | ratio | target | met?",
        rows,
    )
    for h in (h for run in runs for h in run.headlines if h.met is False):
        target = h.target.text if h.target else ""
        console.print(f"[red]missed[/red] {h.workload} ({target}): limited by {h.limited_by}")


def log_axis(axes: Any, values: Sequence[float], label: str) -> None:
    """A horizontal log axis with plain tick labels (0.2x, 1x, 10x) spanning ``values``."""
    axes.set_xscale("log")
    positive = [v for v in values if v > 0] or [1.0]
    low, high = min(0.5, min(positive) / 1.5), max(2.0, max(positive) * 3)
    ticks = [
        t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if low <= t <= high
    ]
    axes.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlim(low, high)
    axes.axvline(1.0, color="#555555", linewidth=1)
    axes.set_xlabel(label)
    axes.invert_yaxis()


def save_chart(path: Path, runs: Sequence[ScriptRun], title: str) -> None:
    """Left: ratios to the baselines; right: each target's figure over the target."""
    headlines = [h for run in runs for h in run.headlines]
    ratio_rows: dict[tuple[str, str], Headline] = {}
    for h in headlines:
        if h.ratio is not None and h.baseline:
            ratio_rows.setdefault((h.workload, h.baseline), h)
    target_rows = [h for h in headlines if h.target and h.met is not None]
    rows = max(len(ratio_rows), len(target_rows))
    made = figure(15, max(5.0, 0.3 * rows + 1.8))
    left, right = made.subplots(1, 2)
    ratios = [h.ratio or 0.0 for h in ratio_rows.values()]
    left.barh(range(len(ratios)), ratios, color="#1f77b4")
    for y, value in enumerate(ratios):
        left.annotate(
            f"{value:.2f}x",
            (value, y),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=6,
        )
    left.set_yticks(range(len(ratios)), [f"{w} / {b}" for w, b in ratio_rows], fontsize=6)
    log_axis(left, ratios, "cqrskit / baseline, medians of the rounds (1x = the same)")
    left.set_title("ratios to the baselines", fontsize=9)
    attainment = [h.attainment() or 0.0 for h in target_rows]
    right.barh(
        range(len(target_rows)),
        attainment,
        color=["#2ca02c" if h.met else "#d62728" for h in target_rows],
    )
    for y, (h, value) in enumerate(zip(target_rows, attainment, strict=True)):
        figure_text = (
            fmt(h.value, h.unit)
            if h.target and h.target.on == "value"
            else (f"{h.ratio:.2f}x" if h.ratio is not None else "-")
        )
        right.annotate(
            figure_text,
            (value, y),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=6,
        )
    right.set_yticks(
        range(len(target_rows)),
        [f"{h.workload}: {h.target.text if h.target else ''}" for h in target_rows],
        fontsize=6,
    )
    log_axis(right, attainment, "figure / target (target / figure for upper bounds); ≥1x: met")
    right.set_title("targets (green: met, red: missed)", fontsize=9)
    made.suptitle(title, fontsize=10)
    save_figure(made, path)


# --- the README ---------------------------------------------------------------------------------


def readme_table(summary: dict[str, Any]) -> str:
    """The short table for README.md: one row per figure that has a target."""
    machine = summary["machine"]
    lines = [
        f"The last full run, {summary['started_at'][:10]} at commit "
        f"`{machine['git']['commit'][:7]}`, on {machine['nproc']} CPUs shared by the services "
        f"(PostgreSQL {machine['postgres']['server_version']}, Kafka "
        f"{machine['kafka']['version']}, Elasticsearch {machine['elasticsearch']['version']}), "
        f"by `{summary['command']}` "
        f"([`bench/results/{summary['file']}`](bench/results/{summary['file']})):",
        "",
        "| workload | cqrskit | against the baseline | target |",
        "|---|---|---|---|",
    ]
    rows: dict[tuple[str, Any], dict[str, list[str]]] = {}
    for h in summary["headlines"]:
        key = (h["workload"], h["value"])
        if not any(g["target"] for g in summary["headlines"] if (g["workload"], g["value"]) == key):
            continue
        figure = fmt(h["value"], h["unit"])
        if h["unit"] != "events/s":
            figure = f"{h['figure']}: {figure}"
        row = rows.setdefault(key, {"figure": [figure], "base": [], "t": []})
        if h["baseline"] and h["ratio"] is not None:
            text = f"{h['ratio']:.2f}x {h['baseline']} ({fmt(h['baseline_value'], h['unit'])})"
            if text not in row["base"]:
                row["base"].append(text)
        if h["target"]:
            row["t"].append(f"{h['target']['text']}: **{met_text(h['met'])}**")
    for (workload, _), row in rows.items():
        lines.append(
            f"| {workload} | {row['figure'][0]} | {'; '.join(row['base'])} | "
            f"{'; '.join(row['t'])} |"
        )
    return "\n".join(lines)


def update_readme(summary_path: Path) -> None:
    """Write the table of a saved summary between the README's markers."""
    summary = json.loads(summary_path.read_text())
    summary["file"] = summary_path.name
    text = README.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"README.md has no {README_START} ... {README_END} block")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    README.write_text(f"{head}{README_START}\n{readme_table(summary)}\n{README_END}{tail}")


# --- entry point ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="the short suite (a few minutes)")
    parser.add_argument(
        "--only", help=f"comma-separated benchmarks to run, of {', '.join(HEADLINES)}"
    )
    parser.add_argument(
        "--readme-from", type=Path, help="write a saved summary's table into README.md and exit"
    )
    parser.add_argument(
        "--resummarise",
        type=Path,
        help="read a saved summary's headlines again from its result files and exit",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR, help="where the scripts save their results"
    )
    args = parser.parse_args(argv)
    if args.only:
        unknown = set(args.only.split(",")) - set(HEADLINES)
        if unknown:
            parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    return args


def title_of(summary: dict[str, Any], stamp: str) -> str:
    """The title of the summary's table and chart."""
    return (
        f"cqrskit benchmark suite{' (quick)' if summary['quick'] else ''}, {stamp}: "
        f"{summary['wall_seconds'] / 60:.1f} min, {summary['machine']['nproc']} CPUs"
    )


def save_summary(
    json_path: Path, summary: dict[str, Any], runs: Sequence[ScriptRun], console: Console
) -> None:
    """Print the table; write the summary with the runs' headlines, and its chart."""
    title = title_of(summary, json_path.stem)
    console.rule("[bold]summary[/bold]")
    print_table(console, runs, title)
    headlines = [asdict(h) for run in runs for h in run.headlines]
    summary["scripts"] = [{k: v for k, v in asdict(r).items() if k != "headlines"} for r in runs]
    summary["headlines"] = headlines
    summary["missed"] = [
        {"workload": h["workload"], "target": h["target"]["text"], "limited_by": h["limited_by"]}
        for h in headlines
        if h["met"] is False
    ]
    write_json(json_path, summary)
    png_path = json_path.with_suffix(".png")
    save_chart(png_path, runs, title)
    console.print(f"saved {json_path} and {png_path}")


def resummarise(path: Path, console: Console) -> None:
    """Read the headlines of a saved run again from its scripts' result files.

    For when the way figures are read (a target, a limiting stage) changed
    after the run; the measurements are the files', untouched.
    """
    summary = json.loads(path.read_text())
    runs = []
    for script in summary["scripts"]:
        run = ScriptRun(**script)
        if run.result_file and not run.error:
            document = json.loads((REPO_ROOT / run.result_file).read_text())
            run.headlines = HEADLINES[run.name](document)
        runs.append(run)
    summary["headlines_read_again_at"] = datetime.now(UTC).isoformat()
    save_summary(path, summary, runs, console)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; print the table; save the summary and its chart."""
    args = parse_args(argv)
    console = wide_console(170)
    if args.readme_from:
        update_readme(args.readme_from)
        return 0
    if args.resummarise:
        resummarise(args.resummarise, console)
        return 0
    started = datetime.now(UTC)
    stamp = utc_stamp(started) + ("-quick" if args.quick else "")
    settings = Settings.load()
    machine = machine_info(settings)
    chosen = [s for s in SCRIPTS if not args.only or s.name in args.only.split(",")]
    command = "make bench QUICK=1" if args.quick else "make bench"
    if args.only:
        command = shlex.join(
            ["python", "bench/run.py", *(["--quick"] if args.quick else []), "--only", args.only]
        )
    runs = [run_script(script, args.quick, args.results, console) for script in chosen]
    finished = datetime.now(UTC)
    summary = {
        "suite": "cqrskit benchmarks",
        "quick": args.quick,
        "command": command,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "wall_seconds": (finished - started).total_seconds(),
        "machine": {**machine, "load_average_at_end": list(os.getloadavg())},
        "settings": pipeline_settings(settings),
    }
    save_summary(args.results / f"{stamp}.json", summary, runs, console)
    failed = [run.name for run in runs if run.error]
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
