"""The frame of every script: its options, its time stamp, and where its files go."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from _kit import RESULTS_DIR
from _kit.report import save_document, utc_stamp, wide_console


def parser(doc: str | None, quick: str) -> argparse.ArgumentParser:
    """A parser named by the script's docstring, with ``--quick`` and ``--results``."""
    made = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    made.add_argument("--quick", action="store_true", help=quick)
    made.add_argument(
        "--results", type=Path, default=RESULTS_DIR, help="where to save the JSON and the chart"
    )
    return made


def add(
    made: argparse.ArgumentParser,
    flag: str,
    default: Any,
    help: str,
    kind: type | None = None,
) -> None:
    """One option: its type is ``kind``, or that of ``default``; a bool default is a switch."""
    if isinstance(default, bool):
        made.add_argument(flag, action="store_true", help=help)
    else:
        made.add_argument(flag, type=kind or type(default), default=default, help=help)


def add_split_options(made: argparse.ArgumentParser, what: str) -> None:
    """``--no-split`` and ``--profile``: the instrumented run and the profiled one."""
    made.add_argument(
        "--no-split", action="store_true", help=f"skip the instrumented {what} run (time per step)"
    )
    made.add_argument(
        "--profile", action="store_true", help=f"one more {what} run under cProfile (saves .prof)"
    )


def comma_ints(made: argparse.ArgumentParser, text: str, option: str) -> tuple[int, ...]:
    """``"1000,5000"`` as integers; a usage error otherwise."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        made.error(f"{option} must be comma-separated integers")


def at_least(made: argparse.ArgumentParser, least: int, **values: float) -> None:
    """A usage error for the first option (``fill_chunk`` is ``--fill-chunk``) below ``least``."""
    for name, value in values.items():
        if value < least:
            made.error(f"--{name.replace('_', '-')} must be at least {least}")


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
