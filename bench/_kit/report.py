"""Reporting: the console, the rich tables, the JSON document and the matplotlib charts.

Every script's result file has the same frame (:func:`save_document`):
``benchmark``, ``started_at``, ``finished_at``, ``config``, ``machine``
(with the load at the end), then what the script measured.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from _kit.measure import Measurement, Ratio

#: Colours of the steps of a time split, in order.
STEP_COLOURS = [
    "#bdbdbd", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b",
    "#e377c2", "#17becf", "#ffbb78", "#98df8a", "#d62728", "#aec7e8", "#7f7f7f",
]  # fmt: skip


def utc_stamp(when: datetime) -> str:
    """``20261202T030000Z``: the time part of result file names."""
    return when.strftime("%Y%m%dT%H%M%SZ")


def wide_console(width: int = 150) -> Console:
    """A console; when piped, ``width`` columns (rich assumes 80, too few for the tables)."""
    console = Console()
    return console if console.is_terminal else Console(width=width)


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``path``, indented, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def save_document(
    path: Path,
    benchmark: str,
    started: datetime,
    config: Mapping[str, Any],
    machine: Mapping[str, Any],
    **measured: Any,
) -> None:
    """Write a script's result: the frame every result has, then ``measured``."""
    write_json(
        path,
        {
            "benchmark": benchmark,
            "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "config": dict(config),
            "machine": {**machine, "load_average_at_end": list(os.getloadavg())},
            **measured,
        },
    )


def variant_rows(
    measurements: Sequence[Measurement], unit: str = "events_per_second"
) -> list[dict[str, Any]]:
    """Each measurement as a result's ``variants`` entry: its rounds and their summary."""
    return [
        {
            "key": m.key,
            "label": m.label,
            "rounds": [{**r, unit: v} for r, v in zip(m.rounds, m.values, strict=True)],
            **m.summary(unit),
        }
        for m in measurements
    ]


# --- tables ------------------------------------------------------------------------------


def table(
    console: Console, title: str, columns: str | Sequence[str], rows: Iterable[Sequence[str]]
) -> None:
    """Print a table: the first column left, the others right-aligned.

    ``columns`` are the headers, or one string of them separated by ``|``.
    """
    shown = Table(title=title)
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split("|")]
    for n, column in enumerate(columns):
        shown.add_column(column, justify="left" if n == 0 else "right")
    for row in rows:
        shown.add_row(*row)
    console.print(shown)


#: A column of a rounds table: its header, and its cell for a measurement.
Column = tuple[str, Callable[[Measurement], str]]


def rounds_table(
    console: Console, title: str, ms: Sequence[Measurement], columns: Sequence[Column]
) -> None:
    """One row per measurement, a cell per column."""
    table(console, title, [h for h, _ in columns], ([cell(m) for _, cell in columns] for m in ms))


def rate_columns(rate: str = "median events/s", fmt: str = ",.0f") -> list[Column]:
    """The variant, its median, its min - max, its spread."""
    return [
        ("variant", lambda m: m.label),
        (rate, lambda m: f"{m.median:{fmt}}"),
        ("min - max", lambda m: f"{min(m.values):{fmt}} - {max(m.values):{fmt}}"),
        ("spread", lambda m: f"{m.spread_percent:.0f}%"),
    ]


def ratio_columns(found: Sequence[Ratio], header: str = "vs baseline") -> list[Column]:
    """The ratio of the medians to the measurement's baseline, and the per-round ratios."""
    by_variant = {r.variant: r for r in found}
    return [
        (header, lambda m: ratio_cells(by_variant.get(m.key))[0]),
        ("per-round ratios", lambda m: ratio_cells(by_variant.get(m.key))[1]),
    ]


def share(name: str, digits: int = 0) -> Callable[[Measurement], str]:
    """A cell: the median over the rounds of ``name`` as a percentage of the round's seconds."""
    return lambda m: (
        f"{statistics.median(100 * r[name] / r['seconds'] for r in m.rounds):.{digits}f}%"
    )


def first_columns(first: str) -> list[Column]:
    """The median seconds, the time to the first progress and the rate after it."""

    def ms(m: Measurement) -> str:
        found = m.median_of("first_seconds")
        return f"{1000 * found:.0f} ms" if found else "-"

    def after(m: Measurement) -> str:
        found = m.median_of("events_per_second_after_first")
        return f"{found:,.0f}" if found else "-"

    return [
        ("median s", lambda m: f"{m.median_of('seconds'):.2f}"),
        (first, ms),
        ("events/s after it", after),
    ]


def ratios_table(console: Console, found: Sequence[Ratio], title: str | None = None) -> None:
    """Each ratio: variant, baseline, the ratio of the medians, the per-round ratios."""
    table(
        console,
        title or "Ratios (events/s over the baseline's, same run)",
        "variant | baseline | ratio of medians | per-round ratios",
        ([r.variant, r.baseline, *ratio_cells(r)] for r in found),
    )


def ratio_cells(ratio: Ratio | None, baseline: str = "1.00x (baseline)") -> list[str]:
    """The ratio of the medians, and the per-round ratios."""
    if ratio is None:
        return [baseline, ""]
    return [f"{ratio.ratio_of_medians:.2f}x", ", ".join(f"{r:.2f}" for r in ratio.round_ratios)]


def steps_table(
    console: Console, title: str, steps: Sequence[Mapping[str, Any]], events: int
) -> None:
    """A time split: each step's seconds, share and microseconds per event."""
    table(
        console,
        title,
        ["step", "seconds", "share", "us / event"],
        (
            [
                s["step"],
                f"{s['seconds']:.2f}",
                f"{100 * s['share']:.1f}%",
                f"{1e6 * s['seconds'] / events:.1f}",
            ]
            for s in steps
        ),
    )


def profile_table(
    console: Console, title: str, rows: Sequence[Mapping[str, Any]], count: int = 20
) -> None:
    """The top functions of a profile by own time."""
    own = [r for r in rows if "by" not in r][:count]
    per_query = bool(own) and "own_us_per_query" in own[0]
    columns = ["own us/q", "cumulative us/q"] if per_query else ["own s", "cumulative s"]
    keys = ("own_us_per_query", "cumulative_us_per_query") if per_query else (
        "own_seconds", "cumulative_seconds"
    )  # fmt: skip
    table(
        console,
        title,
        ["function", "calls", *columns],
        ([r["function"], f"{r['calls']:,}", *(f"{r[k]:.2f}" for k in keys)] for r in own),
    )


# --- charts ------------------------------------------------------------------------------


def figure(width: float, height: float) -> Figure:
    """A figure drawn without a display."""
    made = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(made)
    return made


def save_figure(made: Figure, path: Path) -> None:
    """Lay out and save."""
    made.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    made.savefig(path)


def median_bars(
    axes: Axes,
    measurements: Sequence[Measurement],
    colours: Sequence[str],
    label: Callable[[Measurement], str],
    *,
    x: Sequence[float] | None = None,
    width: float = 0.6,
    fontsize: float = 9,
    rotation: float = 0,
    legend: str | None = None,
) -> None:
    """Bars of the medians, whiskers from min to max, a label above each.

    ``legend`` labels the first bar (one legend entry for the group).
    """
    xs = list(x) if x is not None else list(range(len(measurements)))
    for n, (m, colour) in enumerate(zip(measurements, colours, strict=True)):
        axes.bar(
            xs[n],
            m.median,
            width,
            yerr=[[m.median - min(m.values)], [max(m.values) - m.median]],
            capsize=4,
            color=colour,
            label=legend if n == 0 else None,
        )
        axes.annotate(
            label(m),
            (xs[n], max(m.values)),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=fontsize,
            rotation=rotation,
        )


def split_bar(
    axes: Axes, steps: Sequence[Mapping[str, Any]], xlabel: str, title: str, columns: int = 3
) -> None:
    """One horizontal bar of a time split, a share on each wide step, a legend below."""
    left = 0.0
    for step, colour in zip(steps, STEP_COLOURS, strict=False):
        width = max(0.0, step["seconds"])
        axes.barh(0, width, left=left, color=colour, label=step["step"])
        if step["share"] >= 0.05:
            axes.text(
                left + width / 2,
                0,
                f"{100 * step['share']:.0f}%",
                ha="center",
                va="center",
                fontsize=8,
                color="white",
            )
        left += width
    axes.set_yticks([])
    axes.set_xlabel(xlabel)
    axes.set_title(title, fontsize=9)
    axes.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.4), ncol=columns, fontsize=7, frameon=False
    )


def rounds_bars(
    axes: Axes,
    ms: Sequence[Measurement],
    colours: Sequence[str],
    label: Callable[[Measurement], str],
    title: str,
    *,
    ticks: Sequence[str] | None = None,
    fontsize: float = 9,
    headroom: float = 1.25,
) -> None:
    """:func:`median_bars` of events per second, one tick per measurement, room for labels."""
    median_bars(axes, ms, colours, label, fontsize=fontsize)
    axes.set_xticks(range(len(ms)), ticks or [m.label for m in ms], fontsize=fontsize)
    axes.set_ylabel("events per second (median of rounds)")
    axes.set_ylim(top=axes.get_ylim()[1] * headroom)
    axes.set_title(title, fontsize=9)


def rounds_chart(
    path: Path,
    size: tuple[float, float],
    split: Mapping[str, Any] | None,
    who: str,
    *bars: Any,
    detail: str = "",
    **options: Any,
) -> None:
    """:func:`rounds_bars` (``bars``, ``options``) over, if measured, a :func:`split_bar` of
    the instrumented run of the ``who`` (``detail`` goes before its rate in the title);
    ``size`` is the figure's without the split."""
    made = figure(size[0], size[1] + (3.2 if split else 0))
    grid = made.add_gridspec(2 if split else 1, 1, height_ratios=[3, 1.3] if split else None)
    rounds_bars(made.add_subplot(grid[0]), *bars, **options)
    if split:
        rate = f"{detail}{split['events_per_second']:,.0f} events/s with the timers on"
        xlabel = f"seconds (one instrumented {who} run)"
        split_bar(
            made.add_subplot(grid[1]),
            split["steps"],
            xlabel,
            f"Where the {who}'s wall time goes ({rate})",
        )
    save_figure(made, path)
