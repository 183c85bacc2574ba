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

from _kit import REPO_ROOT, RESULTS_DIR, report
from _kit.machine import machine_info, pipeline_settings
from _kit.measure import limited_by, spread
from matplotlib.axes import Axes
from matplotlib.ticker import NullFormatter
from rich.console import Console

from cqrskit import Settings

README = REPO_ROOT / "README.md"
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
#: Each script, in the order they run, and its options in the quick suite (which they keep
#: near five minutes); the full suite runs each with its own defaults.
SCRIPTS = {
    "commands": ("--quick", "--rounds", "2"),
    "relay": ("--quick", "--rounds", "2"),
    "projections": ("--quick", "--rounds", "1", "--batch-sizes", "1000", "--events", "20000"),
    "rebuild": ("--quick", "--rounds", "1", "--events", "50000"),
    "queries": ("--quick", "--rounds", "1", "--docs", "20000", "--queries", "500",
                "--threads", "1"),
    "e2e": ("--quick",),
    "api": ("--quick",),
    "memory": ("--quick",),
}  # fmt: skip


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


def rate(doc: dict[str, Any], key: str) -> float:
    """A variant's median events per second."""
    return float(variant(doc, key)["median_events_per_second"])


def rate_figure(doc: dict[str, Any], key: str, workload: str) -> dict[str, Any]:
    """A variant's events/s as a headline's fields, with its runs' min, median and max."""
    v = variant(doc, key)
    return {
        "workload": workload,
        "figure": "events/s",
        "value": v["median_events_per_second"],
        "unit": "events/s",
        "runs": {
            "runs": len(v["rounds"]),
            **{k: v[f"{k}_events_per_second"] for k in ("min", "median", "max")},
        },
    }


def against(
    common: dict[str, Any], limit: str, rows: Sequence[tuple[str, float, Target | None]]
) -> list[Headline]:
    """One figure (``common``) against each (baseline, baseline's figure, target)."""
    return [
        Headline(**common, baseline=name, baseline_value=base, ratio=common["value"] / base,
                 target=target, limited_by=limit)
        for name, base, target in rows
    ]  # fmt: skip


def append_limit(doc: dict[str, Any], n: int, suffix: str) -> str:
    """What limits appends with ``n`` writers, from the run itself: the largest steps of
    the instrumented sequential batch, the group commit's appends per transaction at ``n``
    writers, and how far the library's recorder alone is from the raw commit."""
    parts = []
    if split := doc.get("cqrskit_time_split"):
        parts.append(f"{limited_by(split['steps'], per=split['events'])} of a sequential append")
    mine = variant(doc, f"cqrskit-{suffix}")
    if transactions := sum(r.get("transactions") or 0 for r in mine["rounds"]):
        per = sum(r["appends"] for r in mine["rounds"]) / transactions
        commits = mine["median_events_per_second"] / per
        parts.append(
            f"{n} writer{'s' if n > 1 else ''}: {per:.1f} appends per transaction, "
            f"{commits:,.0f} transactions/s"
        )
    es, raw = rate(doc, f"eventsourcing-{suffix}"), rate(doc, f"raw-{suffix}")
    parts.append(f"eventsourcing's recorder alone {es / raw:.2f}x raw")
    return "; ".join(parts)


def commands_headlines(doc: dict[str, Any]) -> list[Headline]:
    """Append: cqrskit against raw commits, eventsourcing, and the 64-writer rate."""
    rows = []
    for n in [1, *doc["config"]["writers"]]:
        suffix = "seq" if n == 1 else f"{n}w"
        workload = f"append, {'sequential' if n == 1 else f'{n} writers'}"
        common, limit = (
            rate_figure(doc, f"cqrskit-{suffix}", workload),
            append_limit(doc, n, suffix),
        )
        target = Target("≥0.8x raw commit", 0.8, on="ratio") if n in (1, 4) else None
        bases = [
            ("raw psycopg INSERT+COMMIT", rate(doc, f"raw-{suffix}"), target),
            ("eventsourcing", rate(doc, f"eventsourcing-{suffix}"), None),
            ("eventsourcing, db functions", rate(doc, f"eventsourcing-fn-{suffix}"), None),
        ]
        if n == 64:
            batch = ("raw, 100 rows per COMMIT (4 connections)", rate(doc, "raw-batch-4w"))
            bases.append((*batch, Target("≥20,000 events/s", 20_000)))
        rows += against(common, limit, bases)
    return rows


def one_thread_rate(
    doc: dict[str, Any], key: str, workload: str, split: str, cpu: str
) -> tuple[dict[str, Any], str]:
    """A variant's events/s as a headline's fields, and what limits it: the largest steps
    of the run's instrumented run (``split``, the key of its time split), and how busy the
    thread was (``cpu``, the key of its CPU seconds)."""
    events, steps = doc["config"]["events"], doc.get(split)
    limit = "no instrumented run"
    if steps:
        limit = (
            f"{limited_by(steps['steps'], per=events)} of the instrumented run; its thread on "
            f"CPU {100 * steps[cpu] / steps['seconds']:.0f}% of the wall time"
        )
    return rate_figure(doc, key, f"{workload}, {events:,} events"), limit


def relay_headlines(doc: dict[str, Any]) -> list[Headline]:
    """Relay: events/s and the ratio to the raw producer."""
    common, limit = one_thread_rate(
        doc, "cqrskit", "relay", "relay_time_split", "relay_thread_cpu_seconds"
    )
    base = ("raw: the relay's KafkaPublisher fed directly", rate(doc, "raw"))
    targets = [Target("≥100,000 events/s", 100_000), Target("≥0.5x raw producer", 0.5, "ratio")]
    return against(common, limit, [(*base, t) for t in targets])


def projections_headlines(doc: dict[str, Any]) -> list[Headline]:
    """Projection: the default batch (1000) against the runner and the raw bulk."""
    common, limit = one_thread_rate(
        doc, "cqrskit-b1000", "projection", "worker_time_split", "worker_thread_cpu_seconds"
    )
    bulk = ("raw ES bulk, 1000 ops/request", rate(doc, "raw-b1000"))
    runner = ("eventsourcing ProjectionRunner", rate(doc, "eventsourcing"))
    return against(
        common,
        limit,
        [
            (*bulk, Target("≥10,000 events/s", 10_000)),
            (*runner, Target("≥6x ProjectionRunner", 6, "ratio")),
            (*bulk, Target("≥0.7x raw bulk", 0.7, on="ratio")),
        ],
    )


def rebuild_headlines(doc: dict[str, Any]) -> list[Headline]:
    """Rebuild: wall time, scaled to 1,000,000 events if the run had fewer."""
    mine, live = variant(doc, "rebuild"), variant(doc, "live")
    events, seconds = doc["config"]["events"], mine["median_seconds"]
    scale = 1_000_000 / events
    steps = [
        {"step": key, "key": key, "seconds": value, "share": value / seconds}
        for key, value in (mine.get("median_phases") or {}).items()
        if key != "replay"
    ]
    return [
        Headline(
            workload=f"rebuild, {events:,} events",
            figure="wall s per 1M events" if events != 1_000_000 else "wall s",
            value=seconds * 1_000_000 / events,
            unit="s",
            runs=spread([r["seconds"] * scale for r in mine["rounds"]]),
            baseline="live worker from Kafka, same events",
            baseline_value=live["median_seconds"] * 1_000_000 / events,
            ratio=live["median_seconds"] / seconds,
            target=Target("1M events in <100 s", 100, below=True),
            limited_by=f"{limited_by(steps, per=events)} of the rebuild's wall time "
            "(median of rounds)",
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
        rows.append(
            Headline(
                workload=label,
                figure="queries/s, 1 thread",
                value=mine["median_qps"],
                unit="q/s",
                runs=spread([r["qps"] for r in mine["sequential_rounds"]]),
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
        stage_text = ", ".join(f"{k} {v:.0f} ms" for k, v in means.items())
        stage = max(means, key=lambda k: means[k]) if means else None
        limit = "no stage measured"
        if stage:
            share = 100 * means[stage] / sum(means.values())
            limit = f"{stage} {share:.0f}% of the stages' means ({stage_text}); read model "
            limit += f"refresh_interval {row['refresh_interval']}"
        note = f"p50 {row['p50_ms']['median']:.0f} ms, p95 {row['p95_ms']['median']:.0f} ms; "
        note += f"{row['samples']} samples" + (f", {row['lost']} lost" if row["lost"] else "")
        rows.append(
            Headline(
                workload=f"e2e, {row['label']}, achieved {row['achieved_rate']:,.0f}/s",
                figure="p99 accepted→searchable",
                value=p99["median"] if p99 else None,
                unit="ms",
                runs={"runs": row["runs"], **p99} if p99 else None,
                target=Target("p99 <250 ms", 250, below=True) if is_target else None,
                limited_by=limit,
                note=note + (f"; stage means {stage_text}" if stage_text else ""),
            )
        )
    return rows


def api_headlines(doc: dict[str, Any]) -> list[Headline]:
    """The API: a plain GET's p99 with read-your-writes waits pending, async against the
    blocking baseline; read-your-writes p99 and refreshes per second at the asked rate."""
    alone, found = doc["isolation"]["async"], doc["isolation"]["blocking"]
    waiters = doc["config"]["waiters"]
    mine, base = alone["with_waiters"]["p99_ms"], found["with_waiters"]["p99_ms"]
    rows = [
        Headline(
            workload=f"API, plain GET with {waiters} read-your-writes waits pending",
            figure="p99",
            value=mine,
            unit="ms",
            baseline="blocking API (def on QueryBus, FastAPI's threads)",
            baseline_value=base,
            ratio=base / mine,
            note=f"alone: p99 {alone['alone']['p99_ms']:.1f} ms async, "
            f"{found['alone']['p99_ms']:.1f} ms blocking",
        )
    ]
    for row in doc["freshness"]:
        latency = row["accepted_to_answered"]
        rows.append(
            Headline(
                workload=f"API read-your-writes, {row['asked_commands_per_second']} cmd/s "
                f"asked ({row['achieved_commands_per_second']:,.0f} achieved), "
                f"{row['readers']} readers + {row['loopers']} loopers",
                figure="p99 accepted→answered",
                value=latency["p99_ms"],
                unit="ms",
                note=f"p50 {latency['p50_ms']:.0f} ms; {row['queries_per_second']:,.0f} "
                f"read-your-writes queries/s, {row['refreshes_per_second']:.1f} refreshes/s",
            )
        )
    return rows


def memory_headlines(doc: dict[str, Any]) -> list[Headline]:
    """Memory: peak RSS of the relay and the worker processes."""
    rows = []
    for name, label in (("relay", "relay process"), ("worker", "worker process")):
        entry = doc["summary"][name]
        peak = entry["peak_rss_mb"]
        rises = [time_to_peak(r[name]["memory"]["timeline_mb"]) for r in doc["rounds"]]
        seconds = max(r[name]["seconds"] for r in doc["rounds"])
        first = max(r[name]["memory"]["first_rss_mb"] or 0 for r in doc["rounds"])
        rows.append(
            Headline(
                workload=f"memory, {label}, {doc['config']['events']:,} events",
                figure="peak RSS",
                value=peak["max"],
                unit="MB",
                runs=peak,
                target=Target("<200 MB", 200, below=True),
                limited_by=f"{first:.0f} MB resident at the first sample after start, "
                f"{peak['max']:.0f} MB at the peak; 90% of the peak {max(rises):.1f} s into a "
                f"{seconds:.0f} s run",
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
    "api": api_headlines,
    "memory": memory_headlines,
}


# --- running, and the summary -------------------------------------------------------------


def run_script(name: str, quick: bool, results: Path, console: Console) -> ScriptRun:
    """Run one script to its end (its output goes straight through); read what it wrote."""
    before = set(results.glob(f"{name}-*.json"))
    argv = list(SCRIPTS[name] if quick else ())
    shown = shlex.join([f"bench/bench_{name}.py", *argv])
    console.rule(f"[bold]{name}[/bold]: {shown}")
    started = time.monotonic()
    script = str(Path(__file__).parent / f"bench_{name}.py")
    done = subprocess.run([sys.executable, script, *argv], cwd=REPO_ROOT, check=False)
    written = sorted(set(results.glob(f"{name}-*.json")) - before)
    result = str(written[-1].relative_to(REPO_ROOT)) if written else None
    run = ScriptRun(name, shown, time.monotonic() - started, done.returncode, result)
    if done.returncode != 0 or not written:
        run.error = f"exit code {done.returncode}, result file {'found' if written else 'missing'}"
        return run
    try:
        run.headlines = HEADLINES[name](json.loads(written[-1].read_text()))
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
    """met / missed / blank."""
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
    report.table(
        console,
        title,
        "workload | cqrskit | runs (min-max) | baseline | baseline figure | ratio | target | met?",
        rows,
    )
    for h in (h for run in runs for h in run.headlines if h.met is False):
        target = h.target.text if h.target else ""
        console.print(f"[red]missed[/red] {h.workload} ({target}): limited by {h.limited_by}")


def ratio_bars(
    axes: Axes, values: Sequence[float], labels: Sequence[str], texts: Sequence[str], **bar: Any
) -> None:
    """Horizontal bars on a log axis (0.2x, 1x, 10x) spanning ``values``, each annotated."""
    axes.barh(range(len(values)), values, **bar)
    for y, (value, text) in enumerate(zip(values, texts, strict=True)):
        axes.annotate(text, (value, y), xytext=(3, 0), textcoords="offset points", va="center",
                      fontsize=6)  # fmt: skip
    axes.set_yticks(range(len(values)), labels, fontsize=6)
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
    axes.invert_yaxis()


def save_chart(path: Path, runs: Sequence[ScriptRun], title: str) -> None:
    """Left: ratios to the baselines; right: each target's figure over the target."""
    headlines = [h for run in runs for h in run.headlines]
    ratio_rows: dict[tuple[str, str], Headline] = {}
    for h in headlines:
        if h.ratio is not None and h.baseline:
            ratio_rows.setdefault((h.workload, h.baseline), h)
    targets = [h for h in headlines if h.target and h.met is not None]
    made = report.figure(15, max(5.0, 0.3 * max(len(ratio_rows), len(targets)) + 1.8))
    left, right = made.subplots(1, 2)
    ratios = [h.ratio or 0.0 for h in ratio_rows.values()]
    labels = [f"{w} / {b}" for w, b in ratio_rows]
    ratio_bars(left, ratios, labels, [f"{v:.2f}x" for v in ratios], color="#1f77b4")
    left.set_xlabel("cqrskit / baseline, medians of the rounds (1x = the same)")
    left.set_title("ratios to the baselines", fontsize=9)
    texts = [
        fmt(h.value, h.unit) if h.target and h.target.on == "value"
        else (f"{h.ratio:.2f}x" if h.ratio is not None else "-")
        for h in targets
    ]  # fmt: skip
    ratio_bars(
        right,
        [h.attainment() or 0.0 for h in targets],
        [f"{h.workload}: {h.target.text if h.target else ''}" for h in targets],
        texts,
        color=["#2ca02c" if h.met else "#d62728" for h in targets],
    )
    right.set_xlabel("figure / target (target / figure for upper bounds); ≥1x: met")
    right.set_title("targets (green: met, red: missed)", fontsize=9)
    made.suptitle(title, fontsize=10)
    report.save_figure(made, path)


def save_summary(
    json_path: Path, summary: dict[str, Any], runs: Sequence[ScriptRun], console: Console
) -> None:
    """Print the table; write the summary with the runs' headlines, and its chart."""
    title = (
        f"cqrskit benchmark suite{' (quick)' if summary['quick'] else ''}, {json_path.stem}: "
        f"{summary['wall_seconds'] / 60:.1f} min, {summary['machine']['nproc']} CPUs"
    )
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
    report.write_json(json_path, summary)
    save_chart(json_path.with_suffix(".png"), runs, title)
    console.print(f"saved {json_path} and {json_path.with_suffix('.png')}")


# --- the README and a saved run ------------------------------------------------------------


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
    targeted = {(h["workload"], h["value"]) for h in summary["headlines"] if h["target"]}
    rows: dict[tuple[str, Any], dict[str, list[str]]] = {}
    for h in (h for h in summary["headlines"] if (h["workload"], h["value"]) in targeted):
        figure = fmt(h["value"], h["unit"])
        if h["unit"] != "events/s":
            figure = f"{h['figure']}: {figure}"
        row = rows.setdefault(
            (h["workload"], h["value"]), {"figure": [figure], "base": [], "t": []}
        )
        if h["baseline"] and h["ratio"] is not None:
            text = f"{h['ratio']:.2f}x {h['baseline']} ({fmt(h['baseline_value'], h['unit'])})"
            if text not in row["base"]:
                row["base"].append(text)
        if h["target"]:
            row["t"].append(f"{h['target']['text']}: **{met_text(h['met'])}**")
    for (workload, _), row in rows.items():
        base, targets = "; ".join(row["base"]), "; ".join(row["t"])
        lines.append(f"| {workload} | {row['figure'][0]} | {base} | {targets} |")
    return "\n".join(lines)


def update_readme(summary_path: Path) -> None:
    """Write the table of a saved summary between the README's markers."""
    summary = {**json.loads(summary_path.read_text()), "file": summary_path.name}
    text = README.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"README.md has no {README_START} ... {README_END} block")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    README.write_text(f"{head}{README_START}\n{readme_table(summary)}\n{README_END}{tail}")


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


# --- entry point ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add = parser.add_argument
    add("--quick", action="store_true", help="the short suite (a few minutes)")
    add("--only", help=f"comma-separated benchmarks to run, of {', '.join(SCRIPTS)}")
    add("--readme-from", type=Path, help="write a saved summary's table into README.md and exit")
    add("--resummarise", type=Path, help="read a saved summary's headlines again and exit")
    add("--results", type=Path, default=RESULTS_DIR, help="where the scripts save their results")
    args = parser.parse_args(argv)
    if args.only and (unknown := set(args.only.split(",")) - set(SCRIPTS)):
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; print the table; save the summary and its chart."""
    args = parse_args(argv)
    console = report.wide_console(170)
    if args.readme_from:
        update_readme(args.readme_from)
        return 0
    if args.resummarise:
        resummarise(args.resummarise, console)
        return 0
    started = datetime.now(UTC)
    settings = Settings.load()
    machine = machine_info(settings)
    chosen = [name for name in SCRIPTS if not args.only or name in args.only.split(",")]
    command = "make bench QUICK=1" if args.quick else "make bench"
    if args.only:
        quick = ["--quick"] if args.quick else []
        command = shlex.join(["python", "bench/run.py", *quick, "--only", args.only])
    runs = [run_script(name, args.quick, args.results, console) for name in chosen]
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
    stamp = report.utc_stamp(started) + ("-quick" if args.quick else "")
    save_summary(args.results / f"{stamp}.json", summary, runs, console)
    if failed := [run.name for run in runs if run.error]:
        console.print(f"[red]failed: {', '.join(failed)}[/red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
