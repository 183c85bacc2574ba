"""The relay and the workers as real ``cqrskit`` processes, on the shared harness.

:class:`ProcessPipeline` is one run's shop pipeline (schema, topics,
indices of its own) on :mod:`tests.processes`, the harness the fault
suite uses too; :func:`scrape` reads a process's Prometheus endpoint.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from _kit.product import (
    Topology,
)
from _kit.stack import APP_NAME, clean_up
from cqrskit import Settings
from tests.processes import CliProcess, cli_env, run_cli, wait_until

__all__ = ["CliProcess", "ProcessPipeline", "Scrape", "scrape", "wait_until"]

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class ProcessPipeline:
    """The shop's relay and projection workers as processes, on their own schema, topics, indices.

    :meth:`clean_up` removes them with the consumer groups, as
    ``examples/shop/demo.py`` does.
    """

    def __init__(self, tag: str, logs: Path, **settings: Any):
        self.tag = tag
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.env = cli_env(tag, metrics_address="127.0.0.1", log_format="text", **settings)
        self.settings = Settings.load(
            postgres_schema=self.env["CQRSKIT_POSTGRES_SCHEMA"],
            topic_prefix=tag,
            index_prefix=f"{tag}-",
            **settings,
        )
        self.processes: list[CliProcess] = []

    def cli(self, *args: str) -> str:
        """Run a ``cqrskit`` command to its end; what it printed."""
        return run_cli(args, self.env)

    def start(self, name: str, *args: str, metrics: bool = True) -> CliProcess:
        """Start ``cqrskit <args>`` (with ``--metrics-port 0``), sampling its memory."""
        process = CliProcess(
            [*args, *(["--metrics-port", "0"] if metrics else [])],
            self.env,
            self.logs / f"{self.tag}-{name}.log",
            name=name,
            sample_memory=True,
        )
        process.start()
        self.processes.append(process)
        return process

    @staticmethod
    def stop(process: CliProcess) -> dict[str, Any]:
        """The memory it used (sampled to the last moment), then SIGTERM; and its exit code."""
        memory = process.memory()
        process.stop()
        return {"name": process.name, "exit_code": process.running().returncode, "memory": memory}

    def stop_all(self) -> list[dict[str, Any]]:
        """Stop every process started, newest first."""
        return [self.stop(p) for p in reversed(self.processes)]

    def clean_up(self, console: Console, projection_names: Sequence[str] = ()) -> None:
        """Drop the schema, the topics, the consumer groups and the indices; best effort."""
        groups = [
            Topology.of(self.settings, APP_NAME).projection_group(name) for name in projection_names
        ]
        clean_up(
            self.settings,
            console,
            indices=self.settings.index_prefix,
            topics=f"{self.tag}.",
            groups=groups,
            schema=True,
        )


def scrape(url: str) -> Scrape:
    """Every sample of a Prometheus endpoint: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
