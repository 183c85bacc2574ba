"""The frame of every script: its options, its run (settings, machine, clean-up) and its files."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from _kit import RESULTS_DIR
from _kit.machine import machine_info
from _kit.report import save_document, utc_stamp, wide_console
from _kit.stack import clean_up
from cqrskit import Settings

#: The services a result can record, as ``machine_info`` names them, and as they are shown.
SERVICES = (("postgres", "PostgreSQL"), ("kafka", "Kafka"), ("elasticsearch", "Elasticsearch"))

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


#: What a script may own for the length of its run, named after its tag (see :meth:`Run.start`).
Owned = Literal["schema", "topics", "indices"]


@dataclass
class Run:
    """One run of one script: its options, console, settings, machine and result files."""

    benchmark: str
    config: Config
    started: datetime
    console: Console
    settings: Settings
    machine: dict[str, Any]
    #: Consumer groups the run made, removed by :meth:`cleaning`.
    groups: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        benchmark: str,
        config: Config,
        width: int,
        services: Sequence[str] = ("postgres", "kafka", "elasticsearch"),
        own: Sequence[Owned] = (),
        **machine: Any,
    ) -> Run:
        """Begin: ``own`` names what the run's settings take from its tag (a schema, a topic
        and an index prefix of its own); ``machine`` goes to :func:`machine_info`."""
        made = cls(benchmark, config, datetime.now(UTC), wide_console(width), Settings.load(), {})
        tag = made.tag
        update = {
            "schema": {"postgres_schema": tag.replace("-", "_")},
            "topics": {"topic_prefix": tag},
            "indices": {"index_prefix": f"{tag}-"},
        }
        made.settings = made.settings.model_copy(
            update={k: v for o in own for k, v in update[o].items()}
        )
        made.machine = machine_info(made.settings, services, **machine)
        return made

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
        return Path(self.config.results) / f"{self.benchmark}-{self.stamp}{suffix}"

    def profile_path(self) -> Path:
        """Where a profiled run's ``.prof`` goes (the folder made)."""
        path = self.path(".prof")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def versions(self) -> str:
        """``PostgreSQL 15.18, Kafka 4.3, Elasticsearch 8.19.21, 2 CPUs``: what the run asked."""
        m = self.machine
        names = [
            f"{label} {m[key]['server_version' if key == 'postgres' else 'version']}"
            for key, label in SERVICES
            if key in m
        ]
        return ", ".join([*names, f"{m['nproc']} CPUs"])

    def log(self, what: str) -> None:
        """Log the versions, the CPUs and Python, then ``what`` the run is about to do."""
        self.console.log(
            f"{self.versions()}, Python {self.machine['python']}; {what}", _stack_offset=2
        )

    @contextmanager
    def cleaning(self, *, indices: bool = False, topics: bool = False) -> Iterator[None]:
        """On the way out, remove the run's consumer groups and (if asked) its indices and
        topics: those named after its tag."""
        try:
            yield
        finally:
            clean_up(
                self.settings,
                self.console,
                indices=self.tag if indices else None,
                topics=self.tag if topics else None,
                groups=self.groups,
            )

    def save(
        self, notes: Mapping[str, Any], chart: Callable[[Path], None], **measured: Any
    ) -> None:
        """Write the JSON (its config: the options and ``notes``) and the chart; say where."""
        json_path, png_path = self.path(".json"), self.path(".png")
        config = {**vars(self.config), **notes}
        save_document(json_path, self.benchmark, self.started, config, self.machine, **measured)
        chart(png_path)
        self.console.print(f"saved {json_path} and {png_path}")
