"""Real relay processes, real Kafka consumers, and a stream of real commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import pytest
from confluent_kafka import Consumer, Message

from cqrskit import CommandBus, Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.postgres.outbox import read_status
from cqrskit.envelope import WATERMARK_EVENT_TYPE, Envelope
from cqrskit.relay import OutboxRelay, RelayStatus
from cqrskit.runtime import Runtime
from examples.shop import Order, OrderLine, PlaceOrder, RestockItem, ShopApp, handlers
from examples.shop.commands import RegisterItem
from tests.integration.conftest import REPO_ROOT

T = TypeVar("T")
WATERMARK = WATERMARK_EVENT_TYPE.encode()
APP = "examples.shop:ShopApp"
LINE = OrderLine(sku="tea", quantity=1, unit_price="2.00")  # type: ignore[arg-type]


def wait_until(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class RelayProcess:
    """One ``cqrskit relay run`` process."""

    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def instance_suffix(self) -> str:
        return f":{self.proc.pid}"

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class RelayHarness:
    """Starts relays on one schema and topic prefix; cleans up after the test."""

    settings: Settings
    prefix: str
    tmp: Path
    processes: list[RelayProcess] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CQRSKIT_APP": APP,
            "CQRSKIT_POSTGRES_SCHEMA": self.settings.postgres_schema,
            "CQRSKIT_TOPIC_PREFIX": self.prefix,
            "CQRSKIT_RELAY_PAGE_SIZE": str(self.settings.relay_page_size),
            "CQRSKIT_TOPIC_PARTITIONS": str(self.settings.topic_partitions),
        }

    def start(self) -> RelayProcess:
        log = self.tmp / f"relay-{len(self.processes)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cqrskit.cli", "relay", "run"],
                env=self.env(),
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        relay = RelayProcess(proc, log)
        self.processes.append(relay)
        return relay

    def status(self) -> RelayStatus:
        return read_status(self.settings, "shop")

    def leader(self) -> RelayProcess | None:
        active = self.status().active_instance or ""
        for relay in self.processes:
            if relay.proc.poll() is None and active.endswith(relay.instance_suffix):
                return relay
        return None

    def wait_caught_up(self, timeout: float = 120) -> RelayStatus:
        """Wait until the relay has published everything stored when this was called.

        The target is the head at the call, not the head at each look: while
        commands keep arriving the head moves on between the relay's pages, and
        a relay that keeps up would still be seen behind a head read later.
        """
        target = wait_until(lambda: self.status().head, 60, "a first stored event")

        def caught_up() -> RelayStatus | None:
            status = self.status()
            return status if status.position >= target else None

        try:
            return wait_until(caught_up, timeout, f"the relay to publish up to position {target}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.report()}") from None

    def report(self) -> str:
        """The relay's recorded status and the end of each relay's log, for a failure."""
        lines = [f"status: {self.status()}"]
        for n, relay in enumerate(self.processes):
            state = "running" if relay.proc.poll() is None else f"exited {relay.proc.returncode}"
            tail = relay.output().splitlines()[-40:]
            lines += [f"--- relay {n} (pid {relay.proc.pid}, {state}), last lines:", *tail]
        return "\n".join(lines)

    def start_leader_and_standby(self) -> tuple[RelayProcess, RelayProcess]:
        """Two relays: the first leads, the second stands by."""
        first = self.start()
        wait_until(self.leader, 60, "a leader")
        second = self.start()
        wait_until(lambda: "standing by" in second.output(), 60, "the second relay to stand by")
        assert self.leader() is first
        return first, second

    def stop_all(self) -> None:
        for relay in self.processes:
            if relay.proc.poll() is None:
                relay.kill9()


@pytest.fixture
def relay_settings(schema_settings: Settings) -> Settings:
    return schema_settings.model_copy(update={"relay_page_size": 500})


@pytest.fixture
def relays(
    relay_settings: Settings, unique_name: str, tmp_path: Path, kafka_up: None
) -> Iterator[RelayHarness]:
    harness = RelayHarness(relay_settings, unique_name, tmp_path)
    try:
        yield harness
    finally:
        harness.stop_all()
        admin = kafka_backend.admin(relay_settings)
        topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(unique_name)]
        if topics:
            for future in admin.delete_topics(topics).values():
                future.result(timeout=30)


class CommandStream:
    """Sends commands from a thread until stopped: new orders and item restocks."""

    def __init__(self, settings: Settings):
        self.app = ShopApp(settings)
        self.bus = CommandBus(self.app, handlers)
        self.accepted = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.items = [
            self.bus.dispatch(RegisterItem(sku=f"sku-{n}", name="tea", quantity=0)).aggregate_id
            for n in range(5)
        ]

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                if n % 2:
                    self.bus.dispatch(PlaceOrder(customer_id=f"c{n}", lines=[LINE]))
                else:
                    item = self.items[n % len(self.items)]
                    self.bus.dispatch(RestockItem(item_id=item, quantity=1))
                self.accepted += 1
            except Exception as exc:  # a stream must not die silently
                self.errors.append(exc)
                self._stop.wait(0.1)

    def __enter__(self) -> CommandStream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.app.close()


def bulk_fill(settings: Settings, orders: int, chunk: int = 1000) -> None:
    """Append ``orders`` new orders fast: many aggregates per transaction."""
    with ShopApp(settings) as app:
        for start in range(0, orders, chunk):
            batch = [
                Order(customer_id=f"bulk-{i}", lines=[LINE])
                for i in range(start, min(orders, start + chunk))
            ]
            app.save(*batch)


def stored_events(settings: Settings) -> dict[int, tuple[UUID, int]]:
    """position -> (aggregate id, version) of every stored event."""
    with pg_backend.connect(settings) as conn:
        rows = conn.execute(
            f"SELECT notification_id, originator_id, originator_version "
            f'FROM "{settings.postgres_schema}".shop_events'
        ).fetchall()
    return {int(r[0]): (r[1], int(r[2])) for r in rows}


@dataclass
class Delivered:
    """Messages read back from Kafka, in per-partition order."""

    envelopes: list[Envelope]
    headers: list[dict[str, bytes]]

    def positions(self) -> list[int]:
        return [e.position for e in self.envelopes]

    def duplicates(self) -> list[int]:
        seen: set[int] = set()
        dupes = []
        for position in self.positions():
            if position in seen:
                dupes.append(position)
            seen.add(position)
        return dupes

    def first_versions_by_aggregate(self) -> dict[UUID, list[int]]:
        seen: set[int] = set()
        versions: dict[UUID, list[int]] = defaultdict(list)
        for envelope in self.envelopes:
            if envelope.position not in seen:
                seen.add(envelope.position)
                versions[envelope.aggregate_id].append(envelope.aggregate_version)
        return versions


def read_back(
    settings: Settings, prefix: str, expected: set[int], timeout: float = 120
) -> Iterator[Message]:
    """Every committed message of ``prefix``'s topics, from the start, until ``expected`` are in."""
    consumer = Consumer(
        {
            **kafka_backend.consumer_config(settings),
            "group.id": f"{prefix}-checker-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    missing = set(expected)
    deadline = time.monotonic() + timeout
    try:
        consumer.subscribe([f"^{prefix}\\..*"])
        while missing and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=5000, timeout=0.5):
                if message.error() is not None:
                    continue
                yield message
                headers = dict(message.headers() or [])
                if headers.get("event_type") != WATERMARK:
                    missing.discard(int(headers["position"]))
    finally:
        consumer.close()
    assert not missing, f"{len(missing)} committed events never arrived, e.g. {sorted(missing)[:5]}"


def consume(settings: Settings, prefix: str, expected: set[int], timeout: float = 120) -> Delivered:
    """Read every topic of ``prefix`` from the start until ``expected`` positions are seen."""
    envelopes: list[Envelope] = []
    headers: list[dict[str, bytes]] = []
    for message in read_back(settings, prefix, expected, timeout):
        if dict(message.headers() or []).get("event_type") == WATERMARK:
            continue
        envelope = Envelope.decode(message.value())
        assert message.key() == str(envelope.aggregate_id).encode()
        envelopes.append(envelope)
        headers.append(dict(message.headers() or []))
    return Delivered(envelopes, headers)


def assert_in_order_and_complete(delivered: Delivered, stored: dict[int, tuple[UUID, int]]) -> None:
    """Every stored event arrived; each aggregate's first deliveries are in version order."""
    assert set(delivered.positions()) >= set(stored)
    expected: dict[UUID, list[int]] = defaultdict(list)
    for position in sorted(stored):
        aggregate_id, version = stored[position]
        expected[aggregate_id].append(version)
    got = delivered.first_versions_by_aggregate()
    for aggregate_id, versions in expected.items():
        assert got[aggregate_id] == versions, f"aggregate {aggregate_id} out of order"


@contextmanager
def relay_thread(settings: Settings, application_name: str) -> Iterator[OutboxRelay]:
    """Run one relay in a thread of the test; stop it (and check it did not fail) after."""
    relay = Runtime(settings).relay(application_name)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            relay.run()
        except BaseException as exc:  # surfaced by the test below
            failures.append(exc)

    thread = threading.Thread(target=run, name=f"relay-{application_name}", daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        relay.stop()
        thread.join(timeout=60)
    assert not thread.is_alive(), "the relay did not stop within 60 s"
    assert not failures, f"the relay failed: {failures[0]!r}"


@dataclass
class PartitionLog:
    """Messages read back from Kafka, kept per partition in offset order."""

    #: "topic/partition" -> positions of its events and watermarks, in offset order.
    positions: dict[str, list[int]]
    #: "topic/partition" -> its events, in offset order.
    events: dict[str, list[Envelope]]

    def delivered(self) -> Delivered:
        envelopes = [e for events in self.events.values() for e in events]
        return Delivered(envelopes, [{} for _ in envelopes])

    def applied_with_partition_guard(self) -> list[int]:
        """Positions a consumer guarding on each partition's last position applies."""
        applied: list[int] = []
        for events in self.events.values():
            mark = 0
            for envelope in events:
                if envelope.position > mark:
                    applied.append(envelope.position)
                    mark = envelope.position
        return applied


def read_partitions(
    settings: Settings, prefix: str, expected: set[int], timeout: float = 120
) -> PartitionLog:
    """Read every topic of ``prefix`` (committed messages only) until ``expected`` are seen."""
    positions: dict[str, list[int]] = defaultdict(list)
    events: dict[str, list[Envelope]] = defaultdict(list)
    for message in read_back(settings, prefix, expected, timeout):
        where = f"{message.topic()}/{message.partition()}"
        headers = dict(message.headers() or [])
        positions[where].append(int(headers["position"]))
        if headers.get("event_type") != WATERMARK:
            events[where].append(Envelope.decode(message.value()))
    return PartitionLog(dict(positions), dict(events))
