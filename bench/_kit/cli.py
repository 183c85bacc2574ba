"""The frame of every script: its options, its time stamp, and where its files go."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from _kit import RESULTS_DIR
from _kit.report import save_document, utc_stamp, wide_console

#: The options a script was given: one attribute per option (``--fill-chunk``: ``fill_chunk``).
Config = argparse.Namespace


@dataclass(frozen=True)
class Opt:
    """One option of a script: its default (``quick``: with ``--quick``), its lower bound.

    A bool default is a switch; ``ints`` reads ``"1000,5000"`` as a tuple of integers.
    """

    flag: str
    default: Any
    help: str
    quick: Any = None
    least: float | None = None
    ints: bool = False
    dest: str | None = None

    @property
    def name(self) -> str:
        return self.dest or self.flag.removeprefix("--").replace("-", "_")


def parse(
    doc: str | None,
    quick: str,
    options: Sequence[Opt],
    argv: Sequence[str] | None = None,
    *,
    split: str | None = None,
    check: Callable[[argparse.Namespace], str | None] | None = None,
) -> Config:
    """The options, with ``--quick`` and ``--results`` (and, with ``split``, ``--no-split``
    and ``--profile``: ``split`` and ``profile`` in the answer); ``check`` returns a usage
    error or None. Exits with a usage error on a bad value."""
    made = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    made.add_argument("--quick", action="store_true", help=quick)
    made.add_argument(
        "--results", type=Path, default=RESULTS_DIR, help="where to save the JSON and the chart"
    )
    for o in options:
        if isinstance(o.default, bool):
            made.add_argument(o.flag, action="store_true", dest=o.name, help=o.help)
            continue
        shown = f"default {o.default}" + ("" if o.quick is None else f", {o.quick} with --quick")
        kind = str if o.ints else type(o.default)
        made.add_argument(o.flag, type=kind, dest=o.name, help=f"{o.help} ({shown})")
    if split:
        made.add_argument("--no-split", action="store_true", help=f"no {split} run with timers")
        made.add_argument("--profile", action="store_true", help=f"one more {split} run, profiled")
    args = made.parse_args(argv)
    for o in options:
        value = getattr(args, o.name)
        if value is None:
            value = o.quick if args.quick and o.quick is not None else o.default
        if o.ints:
            try:
                value = tuple(int(part) for part in str(value).split(",") if part.strip())
            except ValueError:
                made.error(f"{o.flag} must be comma-separated integers")
        setattr(args, o.name, value)
        low = min(value, default=0) if o.ints else value
        if o.least is not None and low < o.least:
            made.error(f"{o.flag} must be at least {o.least:g}")
    if split:
        args.split = not args.__dict__.pop("no_split")
    problem = check(args) if check else None
    if problem:
        made.error(problem)
    return args


@dataclass
class Session:
    """One run of one script: when it started, its console, its result files."""

    benchmark: str
    results: Path
    started: datetime
    console: Console

    @classmethod
    def begin(cls, benchmark: str, results: Path, width: int = 150) -> Session:
        return cls(benchmark, results, datetime.now(UTC), wide_console(width))

    @property
    def stamp(self) -> str:
        """``20261202T030000Z``."""
        return utc_stamp(self.started)

    @property
    def tag(self) -> str:
        """``bench-<benchmark>-<stamp>``, lower case: names of what the run creates."""
        return f"bench-{self.benchmark}-{self.stamp.lower()}"

    def path(self, suffix: str) -> Path:
        """``<results>/<benchmark>-<stamp><suffix>``."""
        return self.results / f"{self.benchmark}-{self.stamp}{suffix}"

    def profile_path(self) -> Path:
        """Where a profiled run's ``.prof`` goes (the folder made)."""
        path = self.path(".prof")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def save(
        self,
        config: Mapping[str, Any],
        machine: Mapping[str, Any],
        chart: Callable[[Path], None],
        **measured: Any,
    ) -> None:
        """Write the result's JSON and its chart; say where."""
        json_path, png_path = self.path(".json"), self.path(".png")
        save_document(json_path, self.benchmark, self.started, config, machine, **measured)
        chart(png_path)
        self.console.print(f"saved {json_path} and {png_path}")
