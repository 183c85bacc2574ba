"""What the figures depend on: the machine, the services' versions and settings, the commit.

Every result records :func:`machine_info` (and the pipeline's settings
that matter, :func:`pipeline_settings`), so that a later reader can judge
a figure without the machine it ran on.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka.admin import ConfigResource
from psycopg.sql import SQL, Identifier

from _kit.product import (
    es_backend,
    kafka_backend,
    pg_backend,
)
from cqrskit import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The packages whose versions every result records.
PACKAGES = (
    "cqrskit",
    "eventsourcing",
    "confluent-kafka",
    "elasticsearch",
    "psycopg",
    "pydantic",
    "orjson",
)
#: PostgreSQL settings that decide what a commit costs.
POSTGRES_SETTINGS = (
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "commit_delay",
    "full_page_writes",
    "shared_buffers",
    "max_connections",
)
#: Broker settings that decide what an acknowledged message costs.
KAFKA_BROKER_SETTINGS = (
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "num.io.threads",
    "num.network.threads",
    "min.insync.replicas",
)


def git_state() -> dict[str, Any]:
    """The commit of the checkout, and whether the tree had local changes."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.rstrip()

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(changed),
        "changed_outside_bench": [path for path in changed if not path.startswith("bench/")],
    }


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def _installed(name: str) -> str | None:
    try:
        return package_version(name)
    except PackageNotFoundError:
        return None


def postgres_info(settings: Settings) -> dict[str, str]:
    """The server's version and the settings that decide what a commit costs."""
    with pg_backend.connect(settings) as conn:
        full = conn.execute("SELECT version()").fetchone()
        found = {"version": str(full[0]) if full else "?"}
        for name in ("server_version", *POSTGRES_SETTINGS):
            row = conn.execute(SQL("SHOW {0}").format(Identifier(name))).fetchone()
            found[name] = str(row[0]) if row else "?"
    found["server_version"] = found["server_version"].split()[0]
    return found


def kafka_info(settings: Settings) -> dict[str, Any]:
    """The broker's version and the settings that decide what an acknowledgement costs."""
    kafka = kafka_backend.probe(settings)
    found: dict[str, Any] = {
        "version": kafka.version,
        "detail": kafka.detail,
        "address": kafka.address,
        "librdkafka": confluent_kafka.libversion()[0],
    }
    admin = kafka_backend.admin(settings)
    brokers = sorted(admin.list_topics(timeout=10).brokers)
    if brokers:
        resource = ConfigResource(ConfigResource.Type.BROKER, str(brokers[0]))
        try:
            configs = admin.describe_configs([resource])[resource].result(timeout=10)
        except Exception as exc:  # only informative: a result without them is still a result
            found["broker_settings_error"] = str(exc)
        else:
            found["broker_settings"] = {
                name: configs[name].value for name in KAFKA_BROKER_SETTINGS if name in configs
            }
    found["brokers"] = len(brokers)
    return found


def elasticsearch_info(settings: Settings) -> dict[str, Any]:
    """The cluster's version, heap and processors."""
    es_info = es_backend.probe(settings)
    es = es_backend.client(settings)
    try:
        nodes = es.nodes.info(node_id="_local", metric="jvm,os")
    finally:
        es.close()
    node = next(iter(nodes["nodes"].values()))
    return {
        "version": es_info.version,
        "detail": es_info.detail,
        "address": es_info.address,
        "heap_max_bytes": node.get("jvm", {}).get("mem", {}).get("heap_max_in_bytes"),
        "node_processors": node.get("os", {}).get("allocated_processors"),
    }


def machine_info(
    settings: Settings,
    services: Sequence[str] = ("postgres", "kafka", "elasticsearch"),
    packages: Sequence[str] = PACKAGES,
) -> dict[str, Any]:
    """What the figures depend on: CPUs, versions of the services and packages, load, commit.

    ``services`` names the services to ask (each must be up): ``postgres``,
    ``kafka``, ``elasticsearch``.
    """
    found: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "memory_total_bytes": _meminfo_bytes("MemTotal"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }
    if "postgres" in services:
        found["postgres"] = postgres_info(settings)
        found["postgres_address"] = settings.postgres_address()
    if "kafka" in services:
        found["kafka"] = kafka_info(settings)
        found["librdkafka"] = found["kafka"]["librdkafka"]
    if "elasticsearch" in services:
        found["elasticsearch"] = elasticsearch_info(settings)
    found["packages"] = {name: _installed(name) for name in packages}
    found["git"] = git_state()
    found["load_average_at_start"] = list(os.getloadavg())
    return found


def pipeline_settings(settings: Settings) -> dict[str, Any]:
    """cqrskit's settings that the figures depend on, as this run had them."""
    return {
        "postgres_pool_size": settings.postgres_pool_size,
        "relay_page_size": settings.relay_page_size,
        "relay_pages_in_flight": settings.relay_pages_in_flight,
        "relay_compression": settings.relay_compression,
        "topic_partitions": settings.topic_partitions,
        "topic_replication": settings.topic_replication,
        "projection_batch_size": settings.projection_batch_size,
        # ElasticsearchReadModel.create_index sets shards and replicas only:
        # refresh and translog are Elasticsearch's defaults.
        "read_model_index": {
            "number_of_shards": 1,
            "number_of_replicas": 0,
            "refresh_interval": "1s (Elasticsearch default, not set by cqrskit)",
            "translog.durability": "request (Elasticsearch default: fsync per bulk request)",
        },
    }


def _meminfo_bytes(field: str) -> int | None:
    path = Path("/proc/meminfo")
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return None


def _processes() -> Iterator[tuple[int, str, bytes]]:
    """(pid, name, command line) of every process (Linux: from /proc)."""
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else ():
        if entry.name.isdigit():
            try:
                yield (
                    int(entry.name),
                    (entry / "comm").read_text().strip(),
                    (entry / "cmdline").read_bytes(),
                )
            except OSError:
                continue


def other_benchmarks() -> set[str]:
    """Command lines of other ``bench/bench_*.py`` processes (they share the CPUs)."""
    return {
        cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        for pid, _comm, cmdline in _processes()
        if pid != os.getpid() and b"bench/bench_" in cmdline and b"python" in cmdline
    }


class ServiceCpu:
    """CPU seconds used by Elasticsearch, Kafka and PostgreSQL, from /proc (Linux only).

    PostgreSQL: every ``postgres`` process, plus the CPU of the backends that
    exited (the postmaster's reaped children), so short connections count too.
    """

    TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self) -> None:
        self.pids: dict[str, int | None] = {"elasticsearch": None, "kafka": None}
        self.postmaster: int | None = None
        for pid, comm, cmdline in _processes():
            if b"org.elasticsearch.bootstrap.Elasticsearch" in cmdline:
                self.pids["elasticsearch"] = pid
            elif b"kafka.Kafka" in cmdline:
                self.pids["kafka"] = pid
            elif comm == "postgres" and b"postgres: " not in cmdline:
                self.postmaster = pid

    def _ticks(self, pid: int | None, first: int) -> float | None:
        """Fields ``first`` and ``first + 1`` of /proc/<pid>/stat, in seconds."""
        try:
            raw = Path(f"/proc/{pid}/stat").read_text() if pid is not None else None
        except OSError:
            return None
        if raw is None:
            return None
        fields = raw.rpartition(")")[2].split()  # fields from 3 (state) on
        return (int(fields[first]) + int(fields[first + 1])) / self.TICKS

    def sample(self) -> dict[str, float | None]:
        """CPU seconds so far: utime + stime (PostgreSQL: and its reaped children's)."""
        found = {name: self._ticks(pid, 11) for name, pid in self.pids.items()}
        postgres = self._ticks(self.postmaster, 13)  # cutime, cstime
        if postgres is not None:
            postgres += sum(
                self._ticks(pid, 11) or 0.0 for pid, comm, _ in _processes() if comm == "postgres"
            )
        return {**found, "postgres": postgres}

    @staticmethod
    def used(
        before: Mapping[str, float | None], after: Mapping[str, float | None]
    ) -> dict[str, float | None]:
        """What each service used between two samples (None where unknown)."""
        return {
            name: None if start is None or after.get(name) is None else after[name] - start  # type: ignore[operator]
            for name, start in before.items()
        }
