"""What the benchmark scripts share: the machine, versions, settings, files, memory.

Not a benchmark: the scripts of ``bench/`` import it (they run as scripts,
so ``bench/`` is on their import path). Everything here is plumbing around
the measurements; nothing here is timed.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Protocol

import confluent_kafka
from confluent_kafka import KafkaException
from confluent_kafka.admin import ConfigResource
from prometheus_client.parser import text_string_to_metric_families
from psycopg.sql import SQL, Identifier
from rich.console import Console

from cqrskit import Settings
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters import postgres as pg_backend
from cqrskit.projections import consumer_group

# The example shop lives in examples/, which is not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.shop import Order, OrderLine, ShopApp

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"

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


def utc_stamp(when: datetime) -> str:
    """``20261202T030000Z``: the time part of result file names."""
    return when.strftime("%Y%m%dT%H%M%SZ")


def wide_console(width: int = 140) -> Console:
    """A console; when piped, ``width`` columns (rich assumes 80, too few for the tables)."""
    console = Console()
    return console if console.is_terminal else Console(width=width)


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path``, indented, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """How many runs, and their min, median and max."""
    return {
        "runs": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def quantiles_ms(seconds: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> dict[str, Any]:
    """Percentiles (nearest rank) of latencies given in seconds, in milliseconds."""
    ordered = sorted(seconds)
    found: dict[str, Any] = {"samples": len(ordered)}
    for point in points:
        rank = max(1, math.ceil(len(ordered) * point / 100))
        found[f"p{point}_ms"] = 1000 * ordered[rank - 1] if ordered else None
    found["max_ms"] = 1000 * ordered[-1] if ordered else None
    found["mean_ms"] = 1000 * statistics.fmean(ordered) if ordered else None
    return found


# --- the machine and the services --------------------------------------------------


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


# --- PostgreSQL ----------------------------------------------------------------------


@contextmanager
def fresh_schema(settings: Settings) -> Iterator[None]:
    """Create the settings' schema, and drop it (with everything in it) afterwards."""
    schema = Identifier(settings.postgres_schema)
    with pg_backend.connect(settings) as conn:
        conn.execute(SQL("CREATE SCHEMA {0}").format(schema))
    try:
        yield
    finally:
        with pg_backend.connect(settings) as conn:
            conn.execute(SQL("DROP SCHEMA IF EXISTS {0} CASCADE").format(schema))


def order_line(i: int) -> OrderLine:
    """The one line of order ``i``: quantities and prices vary, so do the totals."""
    return OrderLine(sku="tea", quantity=1 + i % 3, unit_price=Decimal(f"{1 + i % 7}.25"))


class FillConfig(Protocol):
    """What :func:`fill_orders` needs to know: how many orders, customers, per transaction."""

    @property
    def events(self) -> int: ...
    @property
    def customers(self) -> int: ...
    @property
    def fill_chunk(self) -> int: ...


def fill_orders(settings: Settings, config: FillConfig, console: Console) -> float:
    """Append ``config.events`` new orders for ``config.customers`` in turn.

    One ``Order.Placed`` event per order, for ``customer-0``, ``customer-1``,
    ..., ``config.fill_chunk`` orders per transaction; the seconds it took.
    """
    events, customers, chunk = config.events, config.customers, config.fill_chunk
    started = time.perf_counter()
    next_report = events // 4
    with ShopApp(settings) as app:
        for start in range(0, events, chunk):
            stop = min(events, start + chunk)
            app.save(
                *[
                    Order(customer_id=f"customer-{i % customers}", lines=[order_line(i)])
                    for i in range(start, stop)
                ]
            )
            if stop >= next_report and stop < events:
                console.log(f"  filled {stop:,} / {events:,}")
                next_report += events // 4
    return time.perf_counter() - started


# --- memory of other processes ----------------------------------------------------------


def proc_status_kb(pid: int, *fields: str) -> dict[str, int]:
    """Fields of ``/proc/<pid>/status`` given in kB (``VmRSS``, ``VmHWM``, ...); {} if gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in fields:
            found[name] = int(value.split()[0])
    return found


class RssSampler:
    """Samples the resident memory of one process from a thread, every ``interval`` s.

    ``VmRSS`` is the memory resident now; ``VmHWM`` the kernel's own peak of it
    since the process started, so a peak between two samples is not missed.
    """

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid = pid
        self.interval = interval
        self.started = time.monotonic()
        self.timeline: list[tuple[float, int]] = []
        self.peak_hwm_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        """Take one sample now."""
        found = proc_status_kb(self.pid, "VmRSS", "VmHWM")
        if "VmRSS" in found:  # not there while the process is starting or gone
            self.timeline.append((time.monotonic() - self.started, found.get("VmRSS", 0)))
            self.peak_hwm_kb = max(self.peak_hwm_kb, found.get("VmHWM", 0))

    def stop(self) -> dict[str, Any]:
        """Stop sampling (take a last sample first); the figures in MB (10^6 bytes)."""
        self.sample()
        self._stop.set()
        self._thread.join(timeout=5)
        rss = [kb for _, kb in self.timeline]
        return {
            "peak_rss_mb": self.peak_hwm_kb * 1024 / 1e6,
            "max_sampled_rss_mb": max(rss, default=0) * 1024 / 1e6,
            "first_rss_mb": rss[0] * 1024 / 1e6 if rss else None,
            "last_rss_mb": rss[-1] * 1024 / 1e6 if rss else None,
            "samples": len(rss),
            "interval_seconds": self.interval,
            "timeline_mb": [
                (round(t, 2), round(kb * 1024 / 1e6, 1)) for t, kb in thinned(self.timeline, 200)
            ],
        }


def thinned(points: Sequence[tuple[float, int]], most: int) -> list[tuple[float, int]]:
    """At most ``most`` of ``points``, evenly spaced, always with the last."""
    if len(points) <= most:
        return list(points)
    step = len(points) / most
    chosen = [points[int(i * step)] for i in range(most)]
    return [*chosen[:-1], points[-1]]


# --- waiting ----------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> float:
    """Poll ``condition`` until it holds; the seconds it took. Raises TimeoutError."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


# --- the relay and workers as processes ------------------------------------------------


@dataclass
class CliProcess:
    """One ``cqrskit`` command run as a process, its output in a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    rss: RssSampler
    metrics_url: str | None = None

    def output(self, last: int = 4000) -> str:
        """The end of what the process printed."""
        return self.log.read_text(errors="replace")[-last:]

    def wait_for_metrics(self, timeout: float = 60) -> str:
        """The URL of its Prometheus endpoint, read from the line it prints at start."""

        def announced() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output()}")
            found = re.search(r"metrics at http://([\d.:]+)/metrics", self.output(20_000))
            if found:
                self.metrics_url = f"http://{found.group(1)}/metrics"
            return found is not None

        wait_until(announced, timeout, f"{self.name} to serve its metrics")
        assert self.metrics_url is not None
        return self.metrics_url

    def stop(self, timeout: float = 120) -> dict[str, Any]:
        """SIGTERM, wait; the memory it used, and its exit code."""
        running = self.proc.poll() is None
        memory = self.rss.stop()
        if running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return {"name": self.name, "exit_code": self.proc.returncode, "memory": memory}


class ProcessPipeline:
    """The shop's relay and projection workers as real ``cqrskit`` processes.

    Each pipeline has its own schema, topic prefix and index prefix (from
    ``tag``), like ``examples/shop/demo.py``; :meth:`clean_up` removes them
    with the consumer groups, as the demo's ``clean_up`` does.
    """

    APP = "examples.shop:ShopApp"
    APP_NAME = "shop"

    def __init__(self, tag: str, logs: Path, **settings: Any):
        self.tag = tag
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "CQRSKIT_APP": self.APP,
            "CQRSKIT_PROJECTIONS": "projections",
            "CQRSKIT_POSTGRES_SCHEMA": tag.replace("-", "_"),
            "CQRSKIT_TOPIC_PREFIX": tag,
            "CQRSKIT_INDEX_PREFIX": f"{tag}-",
            "CQRSKIT_METRICS_ADDRESS": "127.0.0.1",
            "CQRSKIT_LOG_FORMAT": "text",
            **{f"CQRSKIT_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.settings = Settings.load(
            postgres_schema=self.env["CQRSKIT_POSTGRES_SCHEMA"],
            topic_prefix=tag,
            index_prefix=f"{tag}-",
            **settings,
        )
        self.processes: list[CliProcess] = []

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a ``cqrskit`` command to its end; its output."""
        return subprocess.run(
            [sys.executable, "-m", "cqrskit.cli", *args],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )

    def init_store(self) -> None:
        """``cqrskit db init``: the schema and the event store's tables."""
        self.cli("db", "init")

    def start(self, name: str, *args: str, metrics: bool = True) -> CliProcess:
        """Start ``cqrskit <args>`` (with ``--metrics-port 0``), sampling its memory."""
        log = self.logs / f"{self.tag}-{name}.log"
        command = [sys.executable, "-m", "cqrskit.cli", *args]
        if metrics:
            command += ["--metrics-port", "0"]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command, env=self.env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        process = CliProcess(name, proc, log, RssSampler(proc.pid))
        self.processes.append(process)
        return process

    def stop_all(self) -> list[dict[str, Any]]:
        """Stop every process started, newest first."""
        return [p.stop() for p in reversed(self.processes)]

    def clean_up(self, projection_names: Sequence[str] = ()) -> None:
        """Drop the schema, the topics, the consumer groups and the indices; best effort."""
        settings = self.settings
        with pg_backend.connect(settings) as conn:
            schema = Identifier(settings.postgres_schema)
            conn.execute(SQL("DROP SCHEMA IF EXISTS {0} CASCADE").format(schema))
        admin = kafka_backend.admin(settings)
        topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(f"{self.tag}.")]
        for future in admin.delete_topics(topics).values() if topics else ():
            future.result(timeout=30)
        groups = [consumer_group(settings, self.APP_NAME, name) for name in projection_names]
        for future in admin.delete_consumer_groups(groups).values() if groups else ():
            with suppress(KafkaException):
                future.result(timeout=30)
        es = es_backend.client(settings)
        try:
            es.options(ignore_status=404).indices.delete(index=f"{settings.index_prefix}*")
        finally:
            es.close()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus endpoint: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
