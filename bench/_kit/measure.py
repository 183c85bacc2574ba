"""Measuring: rounds, medians and spreads, ratios to a same-run baseline, time splits.

Nothing here knows a benchmark: a :class:`Measurement` is one variant's
value per round, a :class:`Ratio` two measurements of one run, a
:class:`StepTimer` the wall time of wrapped calls, and :func:`limited_by`
reads the largest shares of a time split the run measured.
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

from rich.console import Console

from _kit.product import (
    quantile,
)

T = TypeVar("T")
#: Give up on an untimed step (publishing the store, a long rebuild, a split run) after this long.
RUN_TIMEOUT = 3600.0


class BenchmarkError(RuntimeError):
    """A run did not do what it measures: a count, a document or an answer is not as expected."""


@dataclass
class Measurement:
    """One variant's figure per round (events/s, queries/s, ...), and what else each round saw."""

    key: str
    label: str
    values: list[float] = field(default_factory=list)
    #: Per round: the figures beside the headline one (seconds, CPU, first ack, ...).
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def add(self, value: float, **extra: Any) -> None:
        """Record one round."""
        self.values.append(value)
        self.rounds.append({"round": len(self.rounds) + 1, **extra})

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread_percent(self) -> float:
        """(max - min) / median, in percent: how noisy the rounds were."""
        return 100.0 * (max(self.values) - min(self.values)) / self.median

    def median_of(self, name: str) -> float | None:
        """The median of a per-round extra, over the rounds that have it."""
        known = [r[name] for r in self.rounds if r.get(name) is not None]
        return statistics.median(known) if known else None

    def summary(self, unit: str = "events_per_second") -> dict[str, Any]:
        """``median_<unit>``, ``min_<unit>``, ``max_<unit>``, ``spread_percent``."""
        return {
            f"median_{unit}": self.median,
            f"min_{unit}": min(self.values),
            f"max_{unit}": max(self.values),
            "spread_percent": self.spread_percent,
        }


@dataclass(frozen=True)
class Ratio:
    """A variant's figure over a baseline's of the same run: of the medians, and per round."""

    variant: str
    baseline: str
    ratio_of_medians: float
    round_ratios: list[float]

    @classmethod
    def of(cls, mine: Measurement, base: Measurement) -> Ratio:
        return cls(
            mine.key,
            base.key,
            mine.median / base.median,
            [a / b for a, b in zip(mine.values, base.values, strict=True)],
        )


def ratios(measurements: Sequence[Measurement], pairs: Sequence[tuple[str, str]]) -> list[Ratio]:
    """The ratio of each (variant, baseline) pair whose two keys were both measured."""
    by_key = {m.key: m for m in measurements}
    return [
        Ratio.of(by_key[mine], by_key[base])
        for mine, base in pairs
        if mine in by_key and base in by_key
    ]


def interleaved(
    measurements: Sequence[Measurement],
    rounds: int,
    run: Callable[[Measurement, int], tuple[float, Mapping[str, Any], str]],
    console: Console,
    unit: str = "events/s",
) -> None:
    """``rounds`` rounds of every measurement, in order in odd rounds and reversed in even ones
    (no variant always goes first); each logged as it ends.

    ``run(m, round_no)`` measures one round: its figure, the round's other
    figures, and a note for the log line (which names the caller's line).
    """
    width = max(len(m.label) for m in measurements)
    for round_no in range(1, rounds + 1):
        for m in measurements if round_no % 2 else reversed(measurements):
            value, extra, note = run(m, round_no)
            m.add(value, **extra)
            console.log(
                f"round {round_no}/{rounds}  {m.label:<{width}} {value:>8,.0f} {unit}  {note}",
                _stack_offset=2,
            )


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """How many runs, and their min, median and max."""
    return {
        "runs": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 < q <= 100): the product's own ``quantile``."""
    found = quantile(values, q / 100)
    if found is None:
        raise ValueError("no values")
    return found


def quantiles_ms(
    values: Sequence[float],
    points: Sequence[float] = (50, 95, 99),
    *,
    scale: float = 1000.0,
    count: str | None = "samples",
) -> dict[str, Any]:
    """``count``, then percentiles (nearest rank; ``p99_9_ms`` for 99.9), max and mean of
    latencies, in milliseconds: ``values`` times ``scale`` (seconds by default)."""
    ordered = sorted(values)
    found: dict[str, Any] = {count: len(ordered)} if count else {}
    for point in points:
        name = f"p{point:g}_ms".replace(".", "_")
        found[name] = scale * percentile(ordered, point) if ordered else None
    found["max_ms"] = scale * ordered[-1] if ordered else None
    found["mean_ms"] = scale * statistics.fmean(ordered) if ordered else None
    return found


def thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds used so far by ``thread`` (Linux: its pthread CPU clock)."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


# --- a product loop in a thread ----------------------------------------------------------


@dataclass
class Timed:
    """One timed run of a loop in a thread, until its progress reached a count."""

    seconds: float
    #: What the progress counter reached (the target, or less if cut short).
    count: int
    #: Seconds to the first progress, and the count it showed then.
    first_seconds: float | None
    first_count: int
    thread_cpu_seconds: float
    process_cpu_seconds: float
    #: (seconds, count) at each change of the counter.
    timeline: list[tuple[float, int]] = field(default_factory=list, repr=False)
    #: Stopped by ``timeout`` before reaching the target.
    partial: bool = False

    def rate(self) -> float:
        return self.count / self.seconds

    def rate_after_first(self) -> float | None:
        """The rate once the loop runs: without its start and first step."""
        if self.first_seconds is None or self.seconds <= self.first_seconds:
            return None
        return (self.count - self.first_count) / (self.seconds - self.first_seconds)

    def figures(self) -> dict[str, Any]:
        """The per-round figures of a measurement."""
        return {
            "seconds": self.seconds,
            "first_seconds": self.first_seconds,
            "first_count": self.first_count,
            "thread_cpu_seconds": self.thread_cpu_seconds,
            "process_cpu_seconds": self.process_cpu_seconds,
            "events_per_second_after_first": self.rate_after_first(),
        }


@dataclass
class Watched:
    """A blocking loop (``OutboxRelay.run``, ``ProjectionWorker.run``) run in a thread.

    :meth:`until` starts it, polls ``progress`` until it reaches a count,
    calls ``stop`` and joins the thread; any error of the loop is raised.
    """

    name: str
    run: Callable[[], None]
    stop: Callable[[], None]
    progress: Callable[[], int | None]
    poll: float = 0.02
    errors: list[BaseException] = field(default_factory=list)

    def _target(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # raised by the watcher
            self.errors.append(exc)

    def until(
        self,
        count: int,
        timeout: float,
        *,
        partial_after: float | None = None,
        on_reached: Callable[[], None] | None = None,
    ) -> Timed:
        """Time the loop from its start until ``progress()`` reaches ``count``.

        With ``partial_after``, a run that has not reached it by then stops
        short: the count so far over the time to its last step.

        Raises:
            RuntimeError: the loop stopped or failed early, or took over ``timeout``.
        """
        thread = threading.Thread(target=self._target, name=self.name, daemon=True)
        cpu_started = time.process_time()
        started = time.perf_counter()
        thread.start()
        timeline: list[tuple[float, int]] = []
        try:
            while True:
                done = self.progress() or 0
                now = time.perf_counter() - started
                if done and (not timeline or timeline[-1][1] != done):
                    timeline.append((now, done))
                cut = partial_after is not None and now > partial_after
                if done >= count or cut:
                    process_cpu = time.process_time() - cpu_started
                    own_cpu = thread_cpu(thread)
                    partial = done < count
                    seconds = timeline[-1][0] if partial and timeline else now
                    break
                if self.errors or not thread.is_alive():
                    raise RuntimeError(f"the {self.name} stopped early: {self.errors!r}")
                if now > timeout:
                    raise RuntimeError(f"the {self.name} did not reach {count} in {timeout} s")
                time.sleep(self.poll)
            if on_reached is not None:
                on_reached()
        finally:
            self.stop()
            thread.join(timeout=120)
        if thread.is_alive() or self.errors:
            raise RuntimeError(f"the {self.name} did not stop cleanly: {self.errors!r}")
        first = timeline[0] if timeline else (None, 0)
        return Timed(seconds, done, first[0], first[1], own_cpu, process_cpu, timeline, partial)

    def profiled(self, path: Path, count: int) -> list[dict[str, Any]]:
        """One untimed run until ``count`` under cProfile, saved to ``path``; the top rows."""
        wrap, rows = profiled(path)
        self.run = wrap(self.run)
        self.until(count, RUN_TIMEOUT)
        return rows


# --- where the time goes -------------------------------------------------------------------


class StepTimer:
    """Exclusive wall time of wrapped calls: a step's time leaves out the steps inside it.

    ``phase`` prefixes the steps' names while set, so that one step can be
    counted apart in each phase of a run.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        #: perf_counter when each step was first entered.
        self.first: dict[str, float] = {}
        self.phase = ""
        self._open: list[list[float]] = []  # per open step: [seconds of its children]
        self._names: list[str] = []

    def wrap(self, name: str | Callable[[], str], function: Callable[..., T]) -> Callable[..., T]:
        """``function``, timed as step ``name`` (a callable: named at each call)."""
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> T:
            label = name if isinstance(name, str) else name()
            label = f"{self.phase}:{label}" if self.phase else label
            self._open.append([0.0])
            self._names.append(label)
            started = clock()
            self.first.setdefault(label, started)
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = clock() - started
                (children,) = self._open.pop()
                self._names.pop()
                self.seconds[label] += elapsed - children
                self.calls[label] += 1
                if self._open:
                    self._open[-1][0] += elapsed

        return timed

    def parent(self) -> str:
        """The innermost open step's name (without the phase)."""
        return self._names[-1].rpartition(":")[2] if self._names else ""


def split(
    seconds: Mapping[str, float], labels: Sequence[tuple[str, str]], total: float
) -> list[dict[str, Any]]:
    """The steps ``(label, key)`` of a run of ``total`` seconds, with their shares."""
    return [
        {"step": label, "key": key, "seconds": seconds.get(key, 0.0),
         "share": seconds.get(key, 0.0) / total}
        for label, key in labels
    ]  # fmt: skip


def split_run(
    loop: Watched,
    count: int,
    timer: StepTimer,
    wraps: Sequence[tuple[Any, str, str | Callable[[], str]]],
    labels: Sequence[tuple[str, str]],
    *,
    first: str,
    replaced: Sequence[tuple[Any, str, Any]] = (),
    merged: Mapping[str, str] | None = None,
) -> tuple[Timed, dict[str, Any]]:
    """One untimed run of ``loop`` until ``count`` with steps timed: the run, and its split.

    Each ``(owner, attribute, step)`` of ``wraps`` is timed as that step and
    each of ``replaced`` patched in, for the run only; the steps' seconds
    are read when the count is reached (``merged`` adds a step's into
    another's); ``start`` is the time to the first call of step ``first``
    and ``other`` what the timers did not see. The wrappers cost about a
    microsecond per call.
    """
    snapshot: dict[str, float] = {}
    with ExitStack() as patches:
        for owner, name, step in wraps:
            wrapped = timer.wrap(step, getattr(owner, name))
            patches.enter_context(mock.patch.object(owner, name, wrapped))
        for owner, name, value in replaced:
            patches.enter_context(mock.patch.object(owner, name, value))
        started = time.perf_counter()
        run = loop.until(count, RUN_TIMEOUT, on_reached=lambda: snapshot.update(timer.seconds))
    steps = {key: snapshot.get(key, 0.0) for _label, key in labels}
    for source, target in (merged or {}).items():
        steps[target] += snapshot.get(source, 0.0)
    steps["start"] = timer.first.get(first, started) - started
    steps["other"] = run.seconds - sum(v for k, v in steps.items() if k != "other")
    return run, {
        "seconds": run.seconds,
        "events_per_second": count / run.seconds,
        "process_cpu_seconds": run.process_cpu_seconds,
        "steps": split(steps, labels, run.seconds),
        "calls": dict(timer.calls),
    }


def limited_by(steps: Sequence[Mapping[str, Any]], per: int | None = None, count: int = 3) -> str:
    """``encode envelopes 33% (4.1 us each), produce 21%, ...``: the largest shares.

    ``steps`` is a time split a run measured (``step``, ``seconds``,
    ``share``); ``per`` the events it covered, for the time of the largest
    step per event. Shares of steps named ``other`` are left out: they are
    what the timers do not see.
    """
    named = [s for s in steps if not str(s.get("key", s["step"])).startswith("other")]
    largest = sorted(named, key=lambda s: s["share"], reverse=True)[:count]
    parts = [f"{s['step']} {100 * s['share']:.0f}%" for s in largest]
    if per and largest:
        parts[0] += f" ({1e6 * largest[0]['seconds'] / per:.1f} us per event)"
    return ", ".join(parts) if parts else "no time split measured"


@dataclass
class GcPauses:
    """Wall seconds in the cyclic collector's pauses, and its collections per generation."""

    seconds: float = 0.0
    collections: list[int] = field(default_factory=lambda: [0, 0, 0])


@contextmanager
def gc_timed() -> Iterator[GcPauses]:
    """The garbage collector's pauses while the block runs (``gc.callbacks``)."""
    found = GcPauses()
    started: list[float] = []

    def callback(phase: str, info: Mapping[str, Any]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            found.seconds += time.perf_counter() - started.pop()
            found.collections[info["generation"]] += 1

    gc.callbacks.append(callback)
    try:
        yield found
    finally:
        gc.callbacks.remove(callback)


def profile_rows(
    profiler: cProfile.Profile, top: int = 25, per: int | None = None, cumulative: bool = True
) -> list[dict[str, Any]]:
    """The top functions of a profile by own time (and by cumulative time, marked ``by``).

    ``per``: also each function's microseconds per that many calls of the
    profiled code (``own_us_per_query``, ``cumulative_us_per_query``).
    """
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, name), (_cc, calls, own, total, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = filename.split("site-packages/")[-1]
        row = {
            "function": f"{Path(where).name}:{line}({name})",
            "calls": calls,
            "own_seconds": own,
            "cumulative_seconds": total,
        }
        if per:
            row["own_us_per_query"] = 1e6 * own / per
            row["cumulative_us_per_query"] = 1e6 * total / per
        rows.append(row)
    by_own = sorted(rows, key=lambda r: r["own_seconds"], reverse=True)[:top]
    if not cumulative:
        return by_own
    by_total = sorted(rows, key=lambda r: r["cumulative_seconds"], reverse=True)[:top]
    return by_own + [{**r, "by": "cumulative"} for r in by_total]


def profiled(path: Path, top: int = 25) -> tuple[Callable[..., Any], list[dict[str, Any]]]:
    """A wrapper that runs a callable under cProfile, saving to ``path``; the rows it fills."""
    rows: list[dict[str, Any]] = []

    def wrap(function: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            profiler = cProfile.Profile()
            try:
                return profiler.runcall(function)
            finally:
                profiler.dump_stats(path)
                rows[:] = profile_rows(profiler, top)

        return run

    return wrap, rows
